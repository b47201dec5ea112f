"""Typed outputs: a model emitting frames (here a stand-in, ``FramePower``) goes through the streaming runtime,
the block pipeline (files and live), the real-time engine and the writers, never resampled back."""
from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from audiokit.audio.resample import resample
from audiokit.errors import AudioError, ModelError
from audiokit.nn.state import StreamingModule
from audiokit.streaming.adapters import TaskAdapter
from audiokit.streaming.outputs import OutputSpec
from audiokit.streaming.pipeline import BlockPipeline, ChannelStreams
from audiokit.streaming.realtime import BlockEngine, drive
from audiokit.streaming.runtime import CausalStream, open_stream

LABELS = ("power", "frame")
SPEC = OutputSpec.frames(100, (2,), LABELS)  # 100 frames/s: one per 160 samples at 16 kHz


class FramePower(StreamingModule):
    """Stand-in frame model: per 10 ms frame ``[mean power, index of the frame]``, ``[B, T] -> [B, T // 160, 2]``;
    causal (streams with the frame count as state) unless ``causal=False`` (then windows, ``frames`` offline)."""

    sample_rate, hop_length, stream_lead, latency_samples = 16000, 160, 0, 160

    def __init__(self, causal: bool = True):
        super().__init__()
        self.causal = causal

    def frames(self, wav: torch.Tensor, first: int = 0) -> torch.Tensor:
        wav = torch.nn.functional.pad(wav, (0, (-wav.shape[-1]) % 160))
        power = wav.unflatten(-1, (-1, 160)).pow(2).mean(-1)
        index = torch.arange(first, first + power.shape[-1], dtype=wav.dtype).expand_as(power)
        return torch.stack([power, index if self.causal else torch.zeros_like(index)], dim=-1)

    forward = power = frames  # power: the method of the "power" task, windowed when not causal

    def step(self, wav, state):
        first = 0 if state is None else int(state["frames"])
        out, self.batch = self.frames(wav, first), wav.shape[0]
        return out, {"frames": torch.tensor(first + out.shape[1])}

    def flush(self, state):
        return state["frames"].new_zeros(self.batch, 0, 2)


def test_the_spec_is_checked():
    with pytest.raises(ValueError, match="positive frame rate"):
        OutputSpec("frames", 1, None, (2,))
    with pytest.raises(ValueError, match="3 labels for frames of shape"):
        OutputSpec.frames(25, (2,), ("a", "b", "c"))
    with pytest.raises(ValueError, match="audio outputs have no frame rate"):
        OutputSpec("audio", 1, 25.0)
    with pytest.raises(ModelError, match="30 frames/s do not divide the model rate of 16000 Hz"):
        OutputSpec.frames(30, (2,)).samples_per_step(16000)
    with pytest.raises(ModelError, match=r"want \[1, C, N, 2\]"):
        SPEC.check_block(torch.zeros(1, 1, 5))


@pytest.mark.parametrize("causal", [True, False])
def test_runtime_streams_frames_in_any_chunks(causal):
    model = FramePower(causal)
    wav = torch.randn(2, 16000 * 2 + 37)
    stream = open_stream(model, 2, window=3200, overlap=640, output=SPEC, offline=model.frames)
    assert isinstance(stream, CausalStream) == causal
    rng, outs, pos = np.random.default_rng(0), [], 0
    while pos < wav.shape[-1]:
        size = int(rng.choice([1, 77, 160, 999, 4000]))
        outs.append(stream.feed(wav[:, pos:pos + size]))
        pos += size
    outs.append(stream.flush())
    frames = torch.cat(outs, dim=1)
    assert frames.shape == (2, math.ceil(wav.shape[-1] / 160), 2)  # the last frame completed with zeros
    torch.testing.assert_close(frames, model.frames(wav))


def test_frames_are_never_resampled_and_files_collect_them(tmp_path):
    from audiokit.blocks import process_file

    model = FramePower()
    x = torch.randn(2, 44100)  # 1 s at 44.1 kHz, two channels
    pipeline = BlockPipeline(lambda: ChannelStreams(model, 2, output=SPEC), 44100, 16000, SPEC, channels=2)
    out = torch.cat([pipeline.feed(b) for b in x.split(10000, dim=-1)] + [pipeline.flush()], dim=2)
    expected = model.frames(resample(x, 44100, 16000))
    assert out.shape == (1, 2, 100, 2)  # 100 frames/s whatever the input rate
    torch.testing.assert_close(out[0], expected)

    source = tmp_path / "a.wav"
    sf.write(source, x.T.numpy() * 0.5, 44100, subtype="FLOAT")
    named = []
    process_file(source, lambda channels: ChannelStreams(model, channels, output=SPEC), 16000,
                 lambda count: named.append(count) or [tmp_path / "a_power.npz"], block_seconds=0.3, output=SPEC)
    assert named == [1]
    saved = np.load(tmp_path / "a_power.npz")
    assert saved["frames"].shape == (2, 100, 2) and float(saved["frame_rate"]) == 100
    assert list(saved["labels"]) == list(LABELS)
    np.testing.assert_allclose(saved["frames"], model.frames(resample(0.5 * x, 44100, 16000)).numpy(), atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "a_power.npz"]  # no temporary files left


class PowerAdapter(TaskAdapter):
    name, output = "power", SPEC

    def describe(self, out: np.ndarray) -> str:
        return f"power {out[0, -1, 0]:.3f}" if out.shape[1] else ""


@pytest.mark.parametrize("policy", ["wait", "drop"])
def test_live_engine_hands_on_the_frames(policy):
    adapter = PowerAdapter(FramePower())
    pipeline = BlockPipeline(adapter.open, 48000, 16000, SPEC, block=480)
    engine = BlockEngine(pipeline.process, 480, SPEC, delay_blocks=3, policy=policy, restart=pipeline.reset)
    assert engine.silence().shape == (1, 0, 2) and adapter.bypass(np.zeros(480, np.float32)).shape == (1, 0, 2)
    wav = np.random.default_rng(1).standard_normal(48000 // 4).astype(np.float32)
    frames = drive(engine.start(), wav, realtime=policy == "drop", rate=48000, tail_blocks=10)  # drop: clocked
    engine.stop()
    expected = FramePower().frames(resample(torch.from_numpy(wav), 48000, 16000)[None])[0].numpy()
    if policy == "wait":
        assert frames.shape[1] > len(expected) and pipeline.starved == 0
        np.testing.assert_allclose(frames[0, :len(expected)], expected, atol=1e-6)
    else:  # frames of blocks missed are missing, never repeated or out of order
        assert frames.shape[1] > 0 and (np.diff(frames[0, :, 1]) > 0).all()
    assert adapter.describe(frames).startswith("power ")


def test_live_files_save_frames_as_npz(tmp_path):
    from audiokit.cli.live_files import Taps, check_outputs

    with pytest.raises(AudioError, match=r"out.wav: frames are saved as .npz files"):
        check_outputs([tmp_path / "out.wav"], None, False, SPEC)
    check_outputs([tmp_path / "out.npz"], tmp_path / "rec.wav", False, SPEC)
    taps = Taps(tmp_path / "rec.wav", [tmp_path / "out.npz"], 16000, 160, SPEC)
    for seq in range(5):
        taps.put(seq, np.full(160, 0.1 * seq, np.float32), np.full((1, seq % 2, 2), seq, np.float32))
    taps.limit_saves(2)
    taps.close()
    saved = np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(saved["frames"], [[[1, 1], [3, 3]]])
    assert sf.info(tmp_path / "rec.wav").frames == 800
