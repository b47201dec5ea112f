"""The Python API: enhance arrays and files, lazy top-level exports; exporting a training run."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_model import save_tiny, tiny_frcrn

import audiokit
from audiokit.audio.dc import remove_dc
from audiokit.audio.io import read_audio
from audiokit.audio.resample import resample
from audiokit.errors import AudioError, CheckpointError, ModelError

torch.set_num_threads(1)  # the machine is shared


@pytest.mark.slow
def test_import_is_cheap_and_exports_are_lazy():
    code = "import sys, audiokit; assert 'torch' not in sys.modules; audiokit.enhance; assert 'torch' in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    assert audiokit.load_model is audiokit.api.load_model
    with pytest.raises(AttributeError):
        audiokit.no_such_thing


def test_types_shapes_and_equality_with_the_offline_model():
    model = tiny_frcrn()
    x = 0.1 * torch.randn(2, 7001)
    with torch.no_grad():
        expected = model.enhance(remove_dc(x, 16000))  # the model never sees a DC offset
    y = audiokit.enhance(x, 16000, model)
    assert isinstance(y, torch.Tensor) and y.shape == x.shape and y.dtype == torch.float32
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=0)
    mono = audiokit.enhance(x[1].numpy().astype(np.float64), 16000, model)
    assert isinstance(mono, np.ndarray) and mono.shape == (7001,) and mono.dtype == np.float64
    np.testing.assert_allclose(mono, expected[1].numpy(), atol=1e-5)
    streamed = audiokit.enhance(x, 16000, model, stream=True, chunk_ms=15)
    torch.testing.assert_close(streamed, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("causal", [True, False])
def test_an_attenuation_limit_keeps_that_share_of_the_input_sample_for_sample(causal):
    model = tiny_frcrn(causal=causal)
    x = 0.1 * torch.randn(2, 9001)
    with torch.no_grad():
        full = model.enhance(remove_dc(x, 16000))
    share = 10 ** (-12 / 20)
    expected = (1 - share) * full + share * remove_dc(x, 16000)  # the input as the model gets it: no DC
    for stream in ((False, True) if causal else (False,)):
        limited = audiokit.enhance(x, 16000, model, stream=stream, chunk_ms=15 if stream else None, atten_lim_db=12)
        torch.testing.assert_close(limited, expected, atol=1e-5, rtol=0)
    kept = audiokit.enhance(x, 16000, model, atten_lim_db=0)
    torch.testing.assert_close(kept, remove_dc(x, 16000), atol=1e-6, rtol=0)
    torch.testing.assert_close(audiokit.enhance(x, 16000, model, atten_lim_db=float("inf")), full, atol=1e-5, rtol=0)
    for bad, shown in ((-1.0, "-1"), (float("nan"), "nan"), ("6", "'6'")):
        with pytest.raises(ModelError, match=f"^atten_lim_db={shown}: must be a number of dB, at least 0$"):
            audiokit.enhance(x, 16000, model, atten_lim_db=bad)
    with pytest.raises(ModelError, match="Enhancer"):  # not dropped silently
        audiokit.enhance(x, 16000, audiokit.Enhancer(model), atten_lim_db=12)


def test_an_attenuation_limit_keeps_the_input_at_its_own_rate_and_band():
    model = tiny_frcrn()
    x = 0.1 * torch.randn(1, 22050)  # white: half of it above the model's 8 kHz band
    dry = remove_dc(x, 44100)
    torch.testing.assert_close(audiokit.enhance(x, 44100, model, atten_lim_db=0), dry, atol=1e-6, rtol=0)
    share = 10 ** (-20 / 20)
    expected = (1 - share) * audiokit.enhance(x, 44100, model) + share * dry
    torch.testing.assert_close(audiokit.enhance(x, 44100, model, atten_lim_db=20), expected, atol=1e-5, rtol=0)


def test_other_rates_resample_like_whole_signal_resampling():
    model = tiny_frcrn()
    x = 0.1 * torch.randn(1, 22050)
    with torch.no_grad():
        expected = resample(model.enhance(resample(remove_dc(x, 44100), 44100, 16000)), 16000, 44100)[:, :x.shape[-1]]
    torch.testing.assert_close(audiokit.enhance(x, 44100, model), expected, atol=1e-5, rtol=0)


def test_non_causal_model_within_one_window_is_the_offline_output():
    model = tiny_frcrn(causal=False)
    x = 0.1 * torch.randn(3000)
    with torch.no_grad():
        expected = model.enhance(remove_dc(x[None], 16000))[0]
    torch.testing.assert_close(audiokit.enhance(x, 16000, model), expected, atol=1e-5, rtol=0)


def test_bad_arrays():
    model = tiny_frcrn()
    for bad in (np.zeros(0, np.float32), np.array([0.0, np.inf], np.float32), np.zeros((1, 2, 3), np.float32),
                np.zeros((0, 100), np.float32)):
        with pytest.raises(AudioError):
            audiokit.enhance(bad, 16000, model)
    x = np.zeros(1600, np.float32)
    for rate in (0, -1, 1, True, 44100.5, "16000", None):
        with pytest.raises(AudioError, match=f"sample_rate {rate!r}: want a whole number of Hz"):
            audiokit.enhance(x, rate, model)
    assert audiokit.enhance(x, 16000.0, model).shape == x.shape  # a whole float rate is fine
    for samples in ((x * 32767).astype(np.int16), torch.zeros(100, dtype=torch.int16), np.zeros(5, bool)):
        with pytest.raises(AudioError, match="want floats"):
            audiokit.enhance(samples, 16000, model)
    with pytest.raises(ModelError, match="got 2.5"):
        audiokit.separate(x, 16000, model=Halves(), shifts=2.5)


def test_bad_devices_and_broken_models(tmp_path):
    with pytest.raises(ModelError, match="device=tpu: not a torch device"):
        audiokit.Enhancer(tiny_frcrn(), device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="CUDA is not available"):
            audiokit.load_model(device="cuda")
    broken = tiny_frcrn()
    with torch.no_grad():
        for p in broken.parameters():
            p.fill_(float("nan"))
    with pytest.raises(ModelError, match="NaN or Inf"):
        audiokit.enhance(np.zeros(1600, np.float32), 16000, broken)
    from audiokit.hub.pretrained import save_pretrained
    bad_config = save_pretrained(tiny_frcrn(), tmp_path / "bad.safetensors", "frcrn", {"win_len": -5})
    with pytest.raises(CheckpointError, match="bad.safetensors: bad configuration for frcrn"):
        audiokit.load_model(str(bad_config))


class Halves(torch.nn.Module):
    """Stand-in separator: two halves of the input."""
    sample_rate, num_spks, hop_length = 16000, 2, 8

    def separate(self, wav):
        return torch.stack([wav / 2, wav / 2], dim=1)


def test_enhance_file_by_name(make_wav, tmp_path):
    source = make_wav("a.wav", seconds=0.4)
    tiny = save_tiny(tmp_path / "tiny.safetensors")
    out = audiokit.enhance_file(source, model=str(tiny))
    assert out == tmp_path / "a_enhanced.wav"
    wav, _ = read_audio(source)
    np.testing.assert_allclose(read_audio(out)[0], audiokit.enhance(wav, 16000, tiny_frcrn()).clip(-1, 1), atol=1e-4)
    with pytest.raises(AudioError, match="exists"):
        audiokit.enhance_file(source, model=str(tiny))
    assert audiokit.enhance_file(source, tmp_path / "o" / "b.wav", model=tiny_frcrn(), force=True).is_file()


@pytest.mark.slow
def test_export_run_takes_the_best_checkpoint(tmp_path):
    from speechbrain.utils.checkpoints import Checkpointer

    from audiokit.hub.export import export_run
    from audiokit.hub.pretrained import load_model, read_metadata

    recipe = Path(__file__).resolve().parents[1] / "recipes/enhancement/frcrn_causal_small.yaml"
    text = recipe.read_text().replace("data_root: ../shared/data", f"data_root: {tmp_path / 'no_data'}")
    text = text.replace("channels: 16", "channels: 4").replace("fsmn_hidden: 16", "fsmn_hidden: 4")
    run = tmp_path / "run"
    run.mkdir()
    (run / "hyperparams.yaml").write_text(text)  # data folders that do not exist: nothing may scan them
    models = [tiny_frcrn(win_len=512, win_inc=256, fft_len=512, fsmn_order=10, seed=s, level_dbfs=-22.0,
                         level_seconds=0.5) for s in range(3)]  # the recipe's level normaliser
    checkpointer = Checkpointer(run / "save")
    for model, score in zip(models, [3.0, 7.5, 5.0]):
        checkpointer.add_recoverable("model", model)
        checkpointer.save_checkpoint(meta={"pesq": score, "si_snr": 10 - score})  # recipe selects by PESQ
    out = export_run(run, tmp_path / "exported.safetensors", {"recipe": "frcrn_causal_small"})
    meta = read_metadata(out)
    assert meta["family"] == "frcrn" and meta["config"] == models[1].config
    assert meta["card"]["recipe"] == "frcrn_causal_small" and meta["card"]["pesq"] == 7.5
    loaded = load_model(str(out))
    for key, value in models[1].state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    from audiokit.hub.export import read_checkpoint_meta
    chosen = sorted((run / "save").glob("CKPT+*"), key=lambda p: read_checkpoint_meta(p)["pesq"])[0]
    out = export_run(run, tmp_path / "chosen.safetensors", {}, checkpoint=chosen)
    assert read_metadata(out)["card"]["pesq"] == 3.0
    chosen_state = load_model(str(out)).state_dict()
    for key, value in models[0].state_dict().items():
        assert torch.equal(chosen_state[key], value), key
    # the mean of the two best (7.5 and 5.0), named in the card
    out = export_run(run, tmp_path / "averaged.safetensors", {}, average=2)
    card = read_metadata(out)["card"]
    assert card["pesq"] == [7.5, 5.0] and len(card["averaged"]) == 2 and "checkpoint" not in card
    averaged = load_model(str(out)).state_dict()
    for key, value in models[1].state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(averaged[key], (value + models[2].state_dict()[key]) / 2)
    from audiokit.errors import CheckpointError
    with pytest.raises(CheckpointError, match="fewer than the 4"):
        export_run(run, tmp_path / "four.safetensors", {}, average=4)
    assert not (tmp_path / "four.safetensors").exists()
    from audiokit.errors import ModelError
    with pytest.raises(ModelError, match="at least 1, not 0"):
        export_run(run, tmp_path / "none.safetensors", {}, average=0)



def test_files_left_clean_on_failure_and_long_names_work(make_wav, tmp_path):
    source = make_wav("a.wav", seconds=0.3)
    broken = tiny_frcrn()
    with torch.no_grad():
        for p in broken.parameters():
            p.fill_(float("nan"))
    with pytest.raises(ModelError, match="NaN or Inf"):  # fails on the first write
        audiokit.enhance_file(source, tmp_path / "new" / "e.wav", model=broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]  # no temporary file, no new folder
    (tmp_path / "afile").write_text("x")
    for target in (tmp_path / "afile" / "e.wav", tmp_path / "afile" / "sub" / "e.wav"):
        with pytest.raises(AudioError, match="e.wav: its folder is not a folder"):
            audiokit.enhance_file(source, target, model=tiny_frcrn())
    for stem in ("b" * 240, "語" * 76):  # the final names fit in 255 bytes; temporary names must too
        assert audiokit.enhance_file(make_wav(stem + ".wav", seconds=0.3), model=tiny_frcrn()).is_file()


class _RunsCode:
    """Pickled, it runs ``touch <path>`` when loaded without weights_only."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.path}",))


def test_checkpoints_never_run_code_and_are_read_by_content(tmp_path):
    from audiokit.nn.checkpoint import read_state_dict

    evil = tmp_path / "evil.pt"
    torch.save({"gain": _RunsCode(tmp_path / "ran")}, evil)
    with pytest.raises(CheckpointError, match="evil.pt: refused: it holds pickled objects other than tensors"):
        audiokit.load_model("frcrn", checkpoint=evil)
    assert not (tmp_path / "ran").exists()
    misnamed = tmp_path / "weights.bin"                               # a safetensors file by another name
    misnamed.write_bytes(save_tiny(tmp_path / "tiny.safetensors").read_bytes())
    assert read_state_dict(misnamed).keys() == tiny_frcrn().state_dict().keys()
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty.wav: is empty"):
        audiokit.enhance_file(tmp_path / "empty.wav", model=tiny_frcrn())


def test_array_layouts_strides_and_half_precision_are_handled():
    """[T, C] (channels last) is refused before T streams are started; views with negative strides and
    bf16/fp16 tensors are converted (issue 18)."""
    model = tiny_frcrn()
    stereo = 0.1 * np.random.default_rng(0).standard_normal((2, 1600)).astype(np.float32)
    for wrong in (stereo.T, torch.from_numpy(stereo.T.copy())):
        with pytest.raises(AudioError, match=r"input: shape \(1600, 2\) reads as 1600 channels of 2 samples.*wav\.T"):
            audiokit.enhance(wrong, 16000, model)
        with pytest.raises(AudioError, match="reads as 1600 channels"):
            audiokit.separate(wrong, 16000, model=Halves())
    expected = audiokit.enhance(stereo, 16000, model)
    np.testing.assert_allclose(audiokit.enhance(stereo[:, ::-1], 16000, model), audiokit.enhance(
        stereo[:, ::-1].copy(), 16000, model))
    np.testing.assert_allclose(audiokit.enhance(stereo[::-1], 16000, model), expected[::-1])
    assert audiokit.separate(stereo[0, ::-1], 16000, model=Halves()).shape == (2, 1600)
    for dtype in (torch.bfloat16, torch.float16):
        half = audiokit.enhance(torch.from_numpy(stereo).to(dtype), 16000, model)
        assert half.dtype == dtype and half.shape == (2, 1600)
        torch.testing.assert_close(half.float(), torch.from_numpy(expected), atol=0.02, rtol=0)


def test_model_files_nested_too_deeply_and_checkpoints_that_are_not(tmp_path, capsys):
    """Deeply nested metadata is a CheckpointError, not a RecursionError; a text file or a folder given as
    weights says what it is (issue 18)."""
    from safetensors.torch import save_file

    from audiokit.cli.main import main

    weights = {k: v.contiguous() for k, v in tiny_frcrn().state_dict().items()}
    for depth in (100_000, 100):  # beyond the JSON decoder's recursion, and within it
        deep = tmp_path / f"deep{depth}.safetensors"
        nested = "[" * depth + "]" * depth
        save_file(weights, str(deep), metadata={"family": "frcrn", "config": "{}", "card": f'{{"x": {nested}}}'})
        with pytest.raises(CheckpointError, match=f"deep{depth}.safetensors: metadata nested more than 32 levels"):
            audiokit.load_model(str(deep))
    notes = tmp_path / "notes.txt"
    notes.write_text("lr: 0.001\nepochs: 10\n")
    run = tmp_path / "CKPT+2024"
    run.mkdir()
    (run / "model.ckpt").write_bytes(b"")
    problems = {notes: "is a text file, not a checkpoint file (it starts 'lr: 0.001')",
                run: f"is a folder, not a checkpoint file (a training checkpoint folder? its weights are {run}/"
                     "model.ckpt)",
                tmp_path: "is a folder, not a checkpoint file",
                Path("/dev/null"): "not a regular file (a device, FIFO or socket)"}
    for path, problem in problems.items():
        with pytest.raises(CheckpointError) as caught:
            audiokit.load_model("frcrn", checkpoint=path)
        assert str(caught.value) == f"{path}: {problem}"
    assert main(["enhance", str(tmp_path / "none.wav"), "--checkpoint", str(notes)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert errors == [f"error: {notes}: is a text file, not a checkpoint file (it starts 'lr: 0.001')"]
    renamed = tmp_path / "config.safetensors"
    renamed.write_text('{"family": "frcrn"}')
    with pytest.raises(CheckpointError, match="config.safetensors: is a text file, not a model file"):
        audiokit.load_model(str(renamed))
