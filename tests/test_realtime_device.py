"""``audiokit stream`` through the real audio path: PortAudio -> ALSA ``file`` plugin (no mocks).

Each run is a subprocess whose HOME holds an ``.asoundrc``: capture reads a raw 16-bit PCM file as if from a
microphone, playback writes what is played into another raw file.  That device is unclocked (faster than real
time), so exactness runs use ``--overload wait``; overload runs slow the model down on purpose.
"""
import ctypes.util
import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from audiokit.hub.pretrained import save_pretrained
from audiokit.models.frcrn import FRCRN
from audiokit.streaming.realtime import alsa_file_device

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("sounddevice") is None or ctypes.util.find_library("portaudio") is None,
    reason="needs libportaudio2 and sounddevice (the mic extra)")

REPO = Path(__file__).resolve().parents[1]
# registers a stand-in separation family, then runs the CLI (what a plugged-in MossFormer2 will look like)
RUNNER = """import sys, torch
from audiokit.hub import pretrained
class TwoSpeakers(torch.nn.Module):
    sample_rate = 16000
    def __init__(self, gain=0.25):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(gain))
    def separate(self, wav):
        return torch.stack([self.gain * wav, -wav], dim=1)
pretrained.FAMILIES["twospeakers"] = TwoSpeakers
from audiokit.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    model = FRCRN(win_len=320, win_inc=160, fft_len=320, channels=4, fsmn_hidden=4, causal=True).eval()
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_pretrained(model, path, "frcrn", model.config)
    return model, path


class Device:
    """A fake sound card in ``tmp``: ``play(args, signal)`` runs ``audiokit stream`` with ``signal`` (int16) as the
    microphone; returns (process, stderr, played samples as float)."""

    def __init__(self, tmp: Path):
        self.tmp, self.home = tmp, tmp / "home"
        self.home.mkdir()
        self.infile, self.outfile = tmp / "mic.raw", tmp / "speaker.raw"
        (self.home / ".asoundrc").write_text(alsa_file_device(self.infile, self.outfile))
        (tmp / "runner.py").write_text(RUNNER)

    def start(self, args, signal_int16: np.ndarray) -> subprocess.Popen:
        signal_int16.astype("<i2").tofile(self.infile)
        env = dict(os.environ, HOME=str(self.home), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
        return subprocess.Popen([sys.executable, str(self.tmp / "runner.py"), "stream", *map(str, args)], env=env,
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def play(self, args, signal_int16: np.ndarray, timeout: float = 300):
        proc = self.start(args, signal_int16)
        proc.out, err = proc.communicate(timeout=timeout)
        return proc, err, self.played() if self.outfile.exists() else None

    def played(self) -> np.ndarray:
        return np.fromfile(self.outfile, "<i2").astype(np.float32) / 32768


def voice(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    from conftest import speechlike
    noisy = speechlike(seconds, rate, seed) + 0.05 * np.random.default_rng(seed).standard_normal(int(seconds * rate))
    return np.round(noisy * 16000).astype(np.int16)


def latencies(err: str):
    """(engine latency in samples, rate) from the command's first line."""
    rate, latency = map(int, re.search(r"stream \w+: (\d+) Hz .* latency (\d+) samples", err).groups())
    return latency, rate


def device_offset(played: np.ndarray, saved: np.ndarray, most: int) -> int:
    """Samples PortAudio's output buffer adds in front (it primes the device with silence): the shift
    within ``most`` samples that best aligns the speaker file with the engine's output."""
    n = len(played) - most
    errors = [np.abs(played[shift:shift + n] - saved[:n]).max() for shift in range(most + 1)]
    return int(np.argmin(errors))


def counters(err: str) -> dict:
    done = err[err.index("done:"):]
    return {k: int(v) for k, v in re.findall(r"(overruns|skipped|late|underruns|xruns|restarts|blocks|processed) (\d+)",
                                             done)}


@pytest.fixture
def device(tmp_path):
    return Device(tmp_path)


def test_list_devices(device):
    proc, err, _ = device.play(["--list-devices"], np.zeros(10, np.int16), timeout=60)
    assert proc.returncode == 0, err
    assert "default" in proc.out


@pytest.mark.slow
def test_played_output_is_offline_output_delayed_by_reported_latency(device, tiny_model, tmp_path):
    model, path = tiny_model
    mic = voice(0.6)
    rec, save = tmp_path / "rec.wav", tmp_path / "out.wav"
    proc, err, played = device.play(["enhance", "--model", path, "--overload", "wait", "--duration", 0.6,
                                     "--record", rec, "--save", save], mic)
    assert proc.returncode == 0, err
    latency, rate = latencies(err)
    recorded, _ = sf.read(rec, dtype="float32")
    np.testing.assert_array_equal(recorded, mic / 32768)  # the microphone path is bit exact
    with torch.no_grad():
        offline = model.enhance(torch.from_numpy(recorded)[None])[0].numpy()
    body = len(offline) - 320  # the offline run ends the signal (last window); the live stream goes on
    saved, _ = sf.read(save, dtype="float32")
    assert len(saved) == len(recorded) + latency
    assert np.abs(saved[:latency]).max() == 0
    np.testing.assert_allclose(saved[latency:latency + body], offline[:body], atol=1.5 / 32768)
    # what reached the speaker: the same, behind PortAudio's output buffer (a few blocks at most)
    shift = latency + device_offset(played, saved, most=4 * 160)
    n = len(played) - shift  # the speaker stops with the microphone
    assert n > len(offline) // 2
    np.testing.assert_allclose(played[shift:], offline[:n], atol=1.5 / 32768)
    assert counters(err)["underruns"] == 0


@pytest.mark.slow
def test_device_rate_differs_from_model_rate(device, tiny_model, tmp_path):
    model, path = tiny_model
    mic = voice(0.4, 48000, seed=1)
    save = tmp_path / "out.wav"
    proc, err, played = device.play(["enhance", "--model", path, "--overload", "wait", "--duration", 0.4,
                                     "--device-rate", 48000, "--save", save], mic)
    assert proc.returncode == 0, err
    latency, rate = latencies(err)
    assert rate == 48000
    x = torch.from_numpy(mic / 32768).float()
    with torch.no_grad():
        expected = AF.resample(model.enhance(AF.resample(x, 48000, 16000)[None])[0], 16000, 48000).numpy()
    saved, sr = sf.read(save, dtype="float32")
    body = len(expected) - 960
    assert sr == 48000
    np.testing.assert_allclose(saved[latency:latency + body], expected[:body], atol=2e-4)


@pytest.mark.slow
def test_overload_survives_and_counts(device, tiny_model, tmp_path):
    _, path = tiny_model
    rec, save = tmp_path / "rec.wav", tmp_path / "out.wav"
    proc, err, played = device.play(["enhance", "--model", path, "--extra-load-ms", 20, "--duration", 1.0,
                                     "--record", rec, "--save", save], voice(1.0))
    assert proc.returncode == 0, err
    c = counters(err)
    assert c["overruns"] + c["skipped"] > 0 and c["underruns"] > 0
    assert c["processed"] < 100
    latency, _ = latencies(err)
    assert sf.info(rec).frames == 16000 and sf.info(save).frames == 16000 + latency


@pytest.mark.slow
def test_separate_writes_one_file_per_speaker_and_plays_the_chosen_one(device, tmp_path):
    path = tmp_path / "twospeakers.safetensors"
    save_pretrained(torch.nn.ParameterDict({"gain": torch.nn.Parameter(torch.tensor(0.25))}), path,
                    "twospeakers", {"gain": 0.25})
    mic = voice(0.5, seed=2)
    proc, err, played = device.play(["separate", "--model", path, "--overload", "wait", "--duration", 0.5,
                                     "--window-ms", 200, "--play-speaker", 2, "--save", tmp_path / "sep.wav"], mic)
    assert proc.returncode == 0, err
    latency, _ = latencies(err)
    x = mic / 32768
    s1, _ = sf.read(tmp_path / "sep_s1.wav", dtype="float32")
    s2, _ = sf.read(tmp_path / "sep_s2.wav", dtype="float32")
    np.testing.assert_allclose(s1[latency:latency + len(x)], 0.25 * x, atol=1.5 / 32768)
    np.testing.assert_allclose(s2[latency:latency + len(x)], -x, atol=1.5 / 32768)
    shift = latency + device_offset(played, s2, most=4 * 160)
    assert len(played) - shift > len(x) // 2
    np.testing.assert_allclose(played[shift:], -x[:len(played) - shift], atol=1.5 / 32768)


@pytest.mark.slow
def test_ctrl_c_finishes_cleanly_with_complete_files(device, tiny_model, tmp_path):
    _, path = tiny_model
    rec, save = tmp_path / "rec.wav", tmp_path / "out.wav"
    proc = device.start(["enhance", "--model", path, "--overload", "wait", "--record", rec, "--save", save],
                        voice(2.0))
    deadline = time.time() + 120
    while not (device.outfile.exists() and device.outfile.stat().st_size > 3200) and time.time() < deadline:
        time.sleep(0.2)  # until the stream is playing
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "interrupted" in err
    latency, _ = latencies(err)
    assert sf.info(save).frames == sf.info(rec).frames + latency > latency
    assert not list(tmp_path.glob(".*partial*"))
