"""``audiokit enhance`` end to end on a tiny random-weight pretrained file; bad inputs; ``audiokit models``."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch
from tiny_model import save_tiny, tiny_frcrn

from audiokit.api import enhance
from audiokit.audio.dc import remove_dc
from audiokit.audio.io import read_audio
from audiokit.cli.main import main

torch.set_num_threads(1)  # the machine is shared

PCM16 = 1e-4  # 16-bit output quantization (3e-5) plus float rounding


@pytest.fixture
def tiny(tmp_path):
    return str(save_tiny(tmp_path / "tiny.safetensors"))


def errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error: ")]


def offline(wav: np.ndarray) -> np.ndarray:
    """The tiny model's whole-signal output for [C, T] at 16 kHz (DC removed first, as always), clipped as 16-bit
    files are."""
    with torch.no_grad():
        return tiny_frcrn().enhance(remove_dc(torch.from_numpy(wav), 16000)).numpy().clip(-1, 1)


@pytest.mark.slow
def test_folder_of_mono_and_resampled_stereo(make_wav, tmp_path, tiny, capsys):
    a = make_wav("in/a.wav", seconds=1.3)
    b = make_wav("in/b.flac", seconds=0.8, sample_rate=44100, channels=2, seed=3)
    assert main(["enhance", str(tmp_path / "in"), "--model", tiny]) == 0
    out, _ = capsys.readouterr()
    assert "RTF" in out
    wav, _ = read_audio(a)
    result, rate = read_audio(tmp_path / "in" / "a_enhanced.wav")
    assert rate == 16000 and result.shape == wav.shape
    np.testing.assert_allclose(result, offline(wav), atol=PCM16)
    stereo, _ = read_audio(b)
    result, rate = read_audio(tmp_path / "in" / "b_enhanced.wav")
    assert rate == 44100 and result.shape == stereo.shape
    for c in range(2):  # each channel on its own, as the API does it
        np.testing.assert_allclose(result[c], enhance(stereo[c], 44100, tiny_frcrn()).clip(-1, 1), atol=PCM16)
    # a second run skips the outputs found in the folder and keeps the existing ones
    before = (tmp_path / "in" / "a_enhanced.wav").read_bytes()
    assert main(["enhance", str(tmp_path / "in"), "--model", tiny]) == 1
    lines = errors(capsys.readouterr().err)
    assert lines == [f"error: {tmp_path / 'in' / n}_enhanced.wav: exists, use --force" for n in ("a", "b")]
    assert (tmp_path / "in" / "a_enhanced.wav").read_bytes() == before
    assert main(["enhance", str(tmp_path / "in"), "--model", tiny, "--force", "-o", str(tmp_path / "o")]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a_enhanced.wav", "b_enhanced.wav"]


def test_stream_mode_matches_block_mode(make_wav, tmp_path, tiny):
    source = make_wav("s.wav", seconds=0.5, channels=2)
    assert main(["enhance", str(source), "--model", tiny, "-o", str(tmp_path / "block")]) == 0
    assert main(["enhance", str(source), "--model", tiny, "--stream", "--chunk-ms", "20",
                 "-o", str(tmp_path / "stream")]) == 0
    block, _ = read_audio(tmp_path / "block" / "s_enhanced.wav")
    stream, _ = read_audio(tmp_path / "stream" / "s_enhanced.wav")
    np.testing.assert_allclose(stream, block, atol=PCM16)


def test_atten_lim_mixes_the_input_back_in_block_and_stream_mode(make_wav, tmp_path, tiny, capsys):
    source = make_wav("s.wav", seconds=0.5, channels=2)
    wav, _ = read_audio(source)
    share = 10 ** (-6 / 20)
    expected = ((1 - share) * offline(wav) + share * remove_dc(torch.from_numpy(wav), 16000).numpy()).clip(-1, 1)
    for mode in ([], ["--stream"]):
        assert main(["enhance", str(source), "--model", tiny, "--atten-lim", "6", *mode, "-o", str(tmp_path / "o"),
                     "--force"]) == 0
        np.testing.assert_allclose(read_audio(tmp_path / "o" / "s_enhanced.wav")[0], expected, atol=PCM16)
    assert main(["enhance", str(source), "--model", tiny, "--atten-lim", "-6", "-o", str(tmp_path / "bad")]) == 1
    assert errors(capsys.readouterr().err) == ["error: --atten-lim -6: must be a number of dB, at least 0"]
    assert not (tmp_path / "bad").exists()


def test_enhancing_a_file_needs_no_frame_engine(make_wav, tmp_path, tiny, monkeypatch):
    """Files run the causal model on large chunks: no ONNX export (seconds on a first run), no TorchScript."""
    import audiokit.streaming.runtime as runtime

    def no_engine(*args):
        raise AssertionError("a frame engine was built for a file")

    monkeypatch.setenv("AUDIOKIT_STREAM_BACKEND", "auto")
    monkeypatch.setenv("AUDIOKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(runtime, "frame_engine", no_engine)
    source = make_wav("a.wav", seconds=1.3, channels=2)
    assert main(["enhance", str(source), "--model", tiny, "-o", str(tmp_path / "o")]) == 0
    assert not (tmp_path / "cache").exists()
    wav, _ = read_audio(source)
    np.testing.assert_allclose(read_audio(tmp_path / "o" / "a_enhanced.wav")[0], offline(wav), atol=PCM16)
    np.testing.assert_allclose(enhance(wav, 16000, tiny_frcrn()).clip(-1, 1), offline(wav), atol=1e-5)  # the API too


def _bad_files(folder, make_wav):
    """name -> expected problem, for files each broken in one way."""
    folder.mkdir(exist_ok=True)
    good = make_wav("bad/good.wav", seconds=0.6)
    (folder / "text.wav").write_bytes(b"this is not audio at all\n" * 40)
    riff = bytearray(good.read_bytes()[:44])
    riff[20:22] = (0x7777).to_bytes(2, "little")  # unknown WAV format code
    (folder / "unreadable.wav").write_bytes(bytes(riff) + b"\0" * 1000)
    (folder / "truncated.wav").write_bytes(good.read_bytes()[:3000])
    sf.write(folder / "empty.wav", np.zeros(0, np.float32), 16000)
    sf.write(folder / "nan.wav", np.array([0.1, np.nan, 0.2] * 500, np.float32), 16000, subtype="FLOAT")
    return good, {"missing.wav": "no such file", "text.wav": "not a readable audio file",
                  "unreadable.wav": "not a readable audio file", "truncated.wav": "truncated",
                  "empty.wav": "contains no samples", "nan.wav": "contains NaN or Inf samples"}


@pytest.mark.slow
def test_bad_inputs_one_line_each_and_the_rest_processed(make_wav, tmp_path, tiny, capsys):
    folder = tmp_path / "bad"
    good, problems = _bad_files(folder, make_wav)
    inputs = [str(folder / name) for name in problems]
    assert main(["enhance", *inputs, str(good), "--model", tiny, "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    lines = errors(err)
    assert "Traceback" not in err and len(lines) == len(problems)
    for line, (name, problem) in zip(lines, problems.items()):
        assert line.startswith(f"error: {folder / name}: {problem}"), line
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["good_enhanced.wav"]  # no temp files left


@pytest.mark.slow
def test_model_and_checkpoint_errors(make_wav, tmp_path, tiny, capsys):
    source = make_wav("a.wav")
    wrong = tmp_path / "wrong.ckpt"
    torch.save(tiny_frcrn(channels=8, fsmn_hidden=8).state_dict(), wrong)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes((tmp_path / "tiny.safetensors").read_bytes()[:5000])
    cases = [(["--model", "no_such_model"], "error: no_such_model: unknown model"),
             (["--model", tiny, "--checkpoint", str(wrong)], f"error: {wrong}: does not fit the model"),
             (["--model", str(corrupt)], f"error: {corrupt}: not a readable"),
             (["--model", tiny, "--checkpoint", str(corrupt)], f"error: {corrupt}: not a readable")]
    for extra, start in cases:
        assert main(["enhance", str(source), *extra]) == 1
        lines = errors(capsys.readouterr().err)
        assert len(lines) == 1 and lines[0].startswith(start), (extra, lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "corrupt.safetensors", "tiny.safetensors",
                                                          "wrong.ckpt"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_unavailable_is_one_line(make_wav, tiny, capsys):
    assert main(["enhance", str(make_wav("a.wav")), "--model", tiny, "--device", "cuda"]) == 1
    assert errors(capsys.readouterr().err) == ["error: --device cuda: CUDA is not available on this machine"]


def test_valid_edge_cases(tmp_path, tiny):
    rate = 16000
    square = np.sign(np.sin(2 * np.pi * 200 * np.arange(rate) / rate)).astype(np.float32)
    cases = {"zeros.wav": np.zeros(8000, np.float32), "short.wav": 0.3 * np.ones(57, np.float32),
             "square.wav": square}
    for name, wav in cases.items():
        sf.write(tmp_path / name, wav, rate, subtype="FLOAT")
    assert main(["enhance", *(str(tmp_path / n) for n in cases), "--model", tiny, "-o", str(tmp_path / "o")]) == 0
    for name, wav in cases.items():
        result, _ = read_audio(tmp_path / "o" / name.replace(".wav", "_enhanced.wav"))
        assert result.shape == (1, len(wav)) and np.isfinite(result).all()
        np.testing.assert_allclose(result[0], offline(wav[None])[0], atol=PCM16)
    assert np.all(read_audio(tmp_path / "o" / "zeros_enhanced.wav")[0] == 0)


def test_models_lists_pretrained_and_official(tmp_path, monkeypatch, capsys):
    import audiokit.hub.pretrained as pretrained

    save_tiny(tmp_path / "tiny_causal.safetensors")
    save_tiny(tmp_path / "tiny_offline.safetensors", causal=False)
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("tiny")}
    params = f"{sum(p.numel() for p in tiny_frcrn().parameters()):,}"
    assert rows["tiny_causal"].split()[1:5] == ["frcrn", "16000", "20.0", "ms"]  # 320 samples at 16 kHz
    assert rows["tiny_offline"].split()[3] == "offline"
    assert rows["tiny_causal"].split()[7] == params
    size = (tmp_path / "tiny_causal.safetensors").stat().st_size / 1e6
    assert rows["tiny_causal"].split()[5:7] == [f"{size:.2f}", "MB"]
    assert "FRCRN_SE_16K" in out


def test_train_subcommand_is_hooked(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.yaml")]) == 1
    assert "nope.yaml: recipe not found" in capsys.readouterr().err


@pytest.mark.slow
def test_console_script(make_wav, tmp_path, tiny):
    exe = shutil.which("audiokit")
    if exe is None:
        pytest.skip("the audiokit console script is not installed (pip install -e .)")
    source = make_wav("a.wav")
    done = subprocess.run([exe, "enhance", str(source), str(tmp_path / "ghost.wav"), "--model", tiny],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert errors(done.stderr) == [f"error: {tmp_path / 'ghost.wav'}: no such file, folder or matching pattern"]
    assert (tmp_path / "a_enhanced.wav").is_file()


@pytest.mark.slow
def test_sigterm_during_a_batch_cleans_up_as_ctrl_c_does(tmp_path, tiny):
    import os
    import signal
    import sys
    import time
    from pathlib import Path

    source = tmp_path / "long.wav"  # noise: quick to make, long to enhance
    sf.write(source, 0.1 * np.random.default_rng(0).standard_normal(180 * 16000).astype(np.float32), 16000)
    out = tmp_path / "o"
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(repo), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "audiokit.cli.main", "enhance", str(source), "--model", tiny,
                             "-o", str(out), "--stream"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out.is_dir() and any(out.iterdir())) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()  # still running, its temporary file written
        assert [p.name for p in out.iterdir()][0].endswith(".tmp.wav")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM and "terminated" in err and "Traceback" not in err
    assert not out.exists()  # the temporary file, and the folder made for it, are gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.wav", "tiny.safetensors"]


def test_main_handles_sigterm_only_while_it_runs(tmp_path, capsys):
    import signal

    before = signal.getsignal(signal.SIGTERM)
    assert main(["enhance", str(tmp_path / "ghost.wav"), "--model", "nope"]) == 1
    assert signal.getsignal(signal.SIGTERM) is before
    capsys.readouterr()
