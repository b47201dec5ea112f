"""Frame engines: ONNX Runtime and TorchScript run the same frame stepper with the same output."""
import logging
import warnings

import numpy as np
import pytest
import torch
from test_streaming import random_chunks, small_frcrn

from audiokit.streaming import engines
from audiokit.streaming.runtime import CausalStream

torch.set_num_threads(1)


def stream_through(model, wav, backend, seed=0):
    stream = CausalStream(model, channels=wav.shape[0], backend=backend)
    outs, pos = [], 0
    for size in random_chunks(wav.shape[-1], np.random.default_rng(seed)):
        outs.append(stream.feed(wav[:, pos:pos + size]))
        pos += size
    outs.append(stream.flush())
    return torch.cat(outs, dim=-1), stream


@pytest.mark.slow
@pytest.mark.parametrize("level_dbfs", [None, -25.0])
def test_onnx_engine_streams_exactly_like_offline(level_dbfs):
    pytest.importorskip("onnxruntime")
    model = small_frcrn(level_dbfs=level_dbfs, level_seconds=0.1)
    wav = torch.randn(2, 7000) * torch.tensor([[0.1], [0.003]])
    with torch.no_grad():
        offline = model.enhance(wav)
    streamed, stream = stream_through(model, wav, "onnx")
    assert stream.backend == "onnx"
    assert streamed.shape == offline.shape
    assert (streamed - offline).abs().max() <= 1e-5
    torch_streamed, torch_stream = stream_through(model, wav, "torch", seed=1)
    assert torch_stream.backend == "torch"
    assert (torch_streamed - streamed).abs().max() <= 1e-5


class _Notes(logging.Handler):
    """Messages logged to the ``audiokit`` logger (the CLI may have turned its propagation off)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.slow
def test_onnx_export_is_cached_per_weights(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("AUDIOKIT_CACHE", str(tmp_path))
    logger, notes = logging.getLogger("audiokit"), _Notes()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(notes)
    try:
        model = small_frcrn()
        CausalStream(model, backend="onnx")
        first = sorted((tmp_path / "onnx").glob("*.onnx"))
        assert len(first) == 1
        assert [m for m in notes.messages if "exporting" in m] == [
            f"exporting the model's frame step to ONNX (once per model and machine, about 10 s): {first[0]}"]
        notes.messages.clear()
        CausalStream(small_frcrn(), backend="onnx")  # same weights, fresh objects: the file is reused
        assert sorted((tmp_path / "onnx").glob("*.onnx")) == first
        assert not [m for m in notes.messages if "exporting" in m]  # the note comes once
    finally:
        logger.removeHandler(notes)
        logger.setLevel(level)
    with torch.no_grad():
        model.unet.linear.conv_re.bias.add_(0.5)
    wav = torch.randn(1, 3000) * 0.1
    with torch.no_grad():
        offline = model.enhance(wav)
    streamed, _ = stream_through(model, wav, "onnx")
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 2  # new weights, new export
    assert (streamed - offline).abs().max() <= 1e-5


@pytest.mark.slow
def test_a_corrupt_cached_export_is_rebuilt_not_given_up(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("AUDIOKIT_CACHE", str(tmp_path))
    model = small_frcrn()
    path = engines.onnx_path(model.frame_stepper(), 1)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x08\x07 half an export")  # e.g. a disk that filled up, or a copy cut short
    logger, notes = logging.getLogger("audiokit"), _Notes()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(notes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no fallback to TorchScript
            stream = CausalStream(model, backend="auto")
    finally:
        logger.removeHandler(notes)
        logger.setLevel(level)
    assert stream.backend == "onnx"
    assert len(notes.messages) == 1 and "\n" not in notes.messages[0]
    assert notes.messages[0].startswith(f"warning: the cached ONNX export {path} is unusable (")
    assert notes.messages[0].endswith("exporting it again (about 10 s)")
    assert path.stat().st_size > 1000 and sorted(p.name for p in path.parent.iterdir()) == [path.name]
    wav = torch.randn(1, 3000) * 0.1
    with torch.no_grad():
        offline = model.enhance(wav)
    assert (torch.cat([stream.feed(wav), stream.flush()], -1) - offline).abs().max() <= 1e-5
    notes.messages.clear()
    logger.addHandler(notes)
    try:
        CausalStream(small_frcrn(), backend="onnx")  # the rebuilt file is used as it is
    finally:
        logger.removeHandler(notes)
    assert notes.messages == []


def test_auto_backend_falls_back_to_torchscript(tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("the cache folder cannot be created under a file")
    monkeypatch.setenv("AUDIOKIT_CACHE", str(blocker))
    monkeypatch.setenv("AUDIOKIT_STREAM_BACKEND", "auto")
    model = small_frcrn()
    with pytest.warns(UserWarning, match="using TorchScript"):
        stream = CausalStream(model)
    assert stream.backend == "torch"
    wav = torch.randn(1, 2000) * 0.1
    with torch.no_grad():
        offline = model.enhance(wav)
    assert (torch.cat([stream.feed(wav), stream.flush()], -1) - offline).abs().max() <= 1e-5
    with pytest.raises((ImportError, OSError)):
        CausalStream(small_frcrn(channels=4), backend="onnx")  # asked for explicitly: the error shows


def test_unknown_backend_and_channel_change_are_errors(monkeypatch):
    model = small_frcrn()
    with pytest.raises(ValueError, match="unknown streaming backend"):
        CausalStream(model, backend="tensorrt")
    monkeypatch.setenv("AUDIOKIT_STREAM_BACKEND", "fast")
    with pytest.raises(ValueError, match="AUDIOKIT_STREAM_BACKEND"):
        CausalStream(model)
    monkeypatch.setenv("AUDIOKIT_STREAM_BACKEND", "torch")
    stream = CausalStream(model, channels=1)
    stream.feed(torch.zeros(2, 800))  # the first chunk decides: 2 channels
    with pytest.raises(ValueError, match="channels"):
        stream.feed(torch.zeros(3, 800))


def test_engine_cache_folder_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOKIT_CACHE", str(tmp_path))
    assert engines.cache_dir() == tmp_path / "onnx"


def test_graph_key_tells_settings_of_inner_modules_apart():
    """Same weights, another level target (a setting of a module inside the stepper): another exported graph."""
    keys = [engines._graph_key(small_frcrn(level_dbfs=level).frame_stepper(), 1) for level in (-20.0, -26.0, -20.0)]
    assert keys[0] != keys[1] and keys[0] == keys[2]
