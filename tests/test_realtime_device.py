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
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import soundfile as sf
import torch

from audiokit.audio.dc import remove_dc
from audiokit.audio.resample import resample
from audiokit.hub.pretrained import save_pretrained
from audiokit.models.frcrn import FRCRN
from audiokit.streaming.realtime import alsa_file_device

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("sounddevice") is None or ctypes.util.find_library("portaudio") is None,
    reason="needs libportaudio2 and sounddevice (the mic extra)")

REPO = Path(__file__).resolve().parents[1]
# registers a stand-in separation family, then runs the CLI (what a plugged-in MossFormer2 will look like)
RUNNER = """import os, signal, sys, time, torch
# as a terminal's foreground job: Ctrl-C works even when the tests run as a background job (whose children
# start with SIGINT ignored, and Python then installs no KeyboardInterrupt)
signal.signal(signal.SIGINT, signal.default_int_handler)
from audiokit.hub import registry
class TwoSpeakers(torch.nn.Module):
    sample_rate = 16000
    def __init__(self, gain=0.25):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(gain))
    def separate(self, wav):
        time.sleep(float(os.environ.get("TWOSPEAKERS_SECONDS", "0")))  # as slow as a real model's window
        self.heard = getattr(self, "heard", 0) + bool(wav.abs().max() > 0)  # the start-up timing feeds silence
        if self.heard > int(os.environ.get("TWOSPEAKERS_BREAK_AFTER", "1000000")):
            raise RuntimeError("the model broke")
        return torch.stack([self.gain * wav, -wav], dim=1)
registry.register("twospeakers", TwoSpeakers)
class FramePower(torch.nn.Module):  # a task emitting frames: the power of every 10 ms, [B, T] -> [B, N, 1]
    sample_rate = 16000
    def __init__(self, gain=1.0):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(gain))
    def power(self, wav):
        wav = torch.nn.functional.pad(wav, (0, (-wav.shape[-1]) % 160))
        return (self.gain * wav.unflatten(-1, (-1, 160)).pow(2).mean(-1))[..., None]
registry.register("framepower", FramePower)
from audiokit.streaming.adapters import ADAPTERS, TaskAdapter
from audiokit.streaming.outputs import OutputSpec
class PowerAdapter(TaskAdapter):
    name, output = "power", OutputSpec.frames(100, (1,), ["power"])
    def describe(self, out):
        return f"power {out[0, -1, 0]:.6f}"
ADAPTERS["power"] = PowerAdapter
from audiokit.streaming.adapters import EnhanceAdapter
class FragileEnhance(EnhanceAdapter):  # what it plays for a late block fails: an error in the audio callback
    def bypass(self, block):
        raise RuntimeError("the fallback broke")
ADAPTERS["fragile"] = FragileEnhance
if os.environ.get("FULL_DISK_FOR_VIDEOS"):  # encoding a video fails as on a full disk
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    import audiokit.motion.render
    audiokit.motion.render._encode = full
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

    def start(self, args, signal_int16: Optional[np.ndarray], **env_vars) -> subprocess.Popen:
        if signal_int16 is not None:
            signal_int16.astype("<i2").tofile(self.infile)
        env = dict(os.environ, HOME=str(self.home), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore",
                   PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),  # this tree's audiokit
                   **env_vars)
        return subprocess.Popen([sys.executable, str(self.tmp / "runner.py"), "stream", *map(str, args)], env=env,
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def play(self, args, signal_int16: np.ndarray, timeout: float = 300, **env_vars):
        proc = self.start(args, signal_int16, **env_vars)
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
        offline = model.enhance(remove_dc(torch.from_numpy(recorded)[None], 16000))[0].numpy()
    body = len(offline) - 320  # the offline run ends the signal (last window); the live stream goes on
    saved, _ = sf.read(save, dtype="float32")
    assert len(saved) == len(recorded) + latency
    assert np.abs(saved[:latency]).max() == 0
    np.testing.assert_allclose(saved[latency:latency + body], offline[:body], atol=1.5 / 32768)
    # what reached the speaker: the same, behind PortAudio's output buffer (a few blocks at most)
    shift = latency + device_offset(played, saved, most=4 * 160)
    # the speaker stops with the microphone; on this unclocked device how much is played by then depends on the
    # machine's load (3681 of 9600 samples on a loaded one, most of them on an idle one): compare at least 10 blocks
    n = len(played) - shift
    assert n >= 10 * 160
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
        expected = resample(model.enhance(resample(remove_dc(x, 48000), 48000, 16000)[None])[0], 16000, 48000).numpy()
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
    mic = voice(1.0, seed=2)  # long enough that most of it is played behind a start-up delay sized on a loaded machine
    proc, err, played = device.play(["separate", "--model", path, "--overload", "wait", "--duration", 1.0,
                                     "--window-ms", 200, "--play-speaker", 2, "--save", tmp_path / "sep.wav"], mic)
    assert proc.returncode == 0, err
    latency, _ = latencies(err)
    x = remove_dc(mic / 32768, 16000)  # what the model is given
    s1, _ = sf.read(tmp_path / "sep_s1.wav", dtype="float32")
    s2, _ = sf.read(tmp_path / "sep_s2.wav", dtype="float32")
    np.testing.assert_allclose(s1[latency:latency + len(x)], 0.25 * x, atol=1.5 / 32768)
    np.testing.assert_allclose(s2[latency:latency + len(x)], -x, atol=1.5 / 32768)
    shift = latency + device_offset(played, s2, most=4 * 160)
    assert len(played) - shift > len(x) // 2
    np.testing.assert_allclose(played[shift:], -x[:len(played) - shift], atol=1.5 / 32768)


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_finishes_cleanly_with_complete_files(device, tiny_model, tmp_path, stop):
    _, path = tiny_model
    rec, save = tmp_path / "rec.wav", tmp_path / "out.wav"
    proc = device.start(["enhance", "--model", path, "--overload", "wait", "--record", rec, "--save", save],
                        voice(2.0))
    deadline = time.time() + 120
    while not (device.outfile.exists() and device.outfile.stat().st_size > 3200) and time.time() < deadline:
        time.sleep(0.2)  # until the stream is playing
    proc.send_signal(stop)  # Ctrl-C, or a service manager's SIGTERM
    _, err = proc.communicate(timeout=300)  # (the queued audio is finished first: minutes on a loaded machine)
    assert proc.returncode == 0, err
    assert "interrupted" in err
    latency, _ = latencies(err)
    assert sf.info(save).frames == sf.info(rec).frames + latency > latency
    assert not list(tmp_path.glob(".*.tmp*"))  # no temporary files left


class PacedMicrophone:
    """Makes ``device``'s microphone a FIFO fed ``rate`` Hz 16-bit noise at real-time pace in 10 ms pieces: a
    clocked device (the plain file device is unclocked). Each time the reader closes it, it is fed anew."""

    def __init__(self, device: Device, rate: int = 16000):
        device.infile.unlink(missing_ok=True)
        os.mkfifo(device.infile)
        self.path, self.piece, self.stop = device.infile, rate // 100, threading.Event()
        self.thread = threading.Thread(target=self._feed, daemon=True)
        self.thread.start()

    def _feed(self):
        rng = np.random.default_rng(0)
        while not self.stop.is_set():
            with open(self.path, "wb", buffering=0) as fifo:  # waits for a reader
                start = time.perf_counter()
                for i in range(100_000):
                    time.sleep(max(0.0, start + i * 0.01 - time.perf_counter()))
                    try:
                        fifo.write((rng.standard_normal(self.piece) * 3000).astype("<i2").tobytes())
                    except BrokenPipeError:
                        break

    def close(self):
        self.stop.set()
        os.close(os.open(self.path, os.O_RDONLY | os.O_NONBLOCK))  # frees a feeder waiting for a reader


@pytest.mark.slow
def test_live_separation_keeps_up_on_a_clocked_device(device, tmp_path):
    """A window model is slow in bursts (one window every hop): the queue delay is sized from the slowest
    block measured at start, so at real time no block is skipped and the output is exact."""
    path = tmp_path / "twospeakers.safetensors"
    save_pretrained(torch.nn.ParameterDict({"gain": torch.nn.Parameter(torch.tensor(0.25))}), path,
                    "twospeakers", {"gain": 0.25})
    mic = PacedMicrophone(device)
    try:
        proc = device.start(["separate", "--model", path, "--no-play", "--duration", 1.5, "--window-ms", 200,
                             "--record", tmp_path / "rec.wav", "--save", tmp_path / "sep.wav"], None,
                            TWOSPEAKERS_SECONDS="0.06")
        _, err = proc.communicate(timeout=120)
    finally:
        mic.close()
    assert proc.returncode == 0, err
    delay_blocks = int(re.search(r"\((\d+) blocks; slowest block", err).group(1))
    assert delay_blocks >= 7  # 60 ms windows in 10 ms blocks, where 2 blocks were the default before
    c = counters(err)
    assert c["skipped"] == c["restarts"] == c["underruns"] == 0, err
    latency, _ = latencies(err)
    x, _ = sf.read(tmp_path / "rec.wav", dtype="float32")
    x = remove_dc(x, 16000)  # what the model is given
    s1, _ = sf.read(tmp_path / "sep_s1.wav", dtype="float32")
    s2, _ = sf.read(tmp_path / "sep_s2.wav", dtype="float32")
    assert len(x) == 24000 and len(s1) == len(x) + latency
    np.testing.assert_allclose(s1[latency:], 0.25 * x, atol=1.5 / 32768)
    np.testing.assert_allclose(s2[latency:], -x, atol=1.5 / 32768)


def test_bad_options_and_outputs_are_one_line_errors_and_write_nothing(device, tiny_model, tmp_path):
    _, path = tiny_model
    (tmp_path / "taken").mkdir()
    cases = [(["--block-ms", "nan"], "--block-ms nan: must be a positive number"),
             (["--delay-blocks", "0"], "--delay-blocks 0: must be a positive number"),
             (["--atten-lim", "-1"], "--atten-lim -1: must be a number of dB, at least 0"),
             (["--input-device", "nosuch"], "--input-device nosuch: No input device matching"),
             (["--device-rate", "500"], "device rate 500: want a whole number of Hz, at least 1000"),
             (["--save", tmp_path / "a.wav", "--record", tmp_path / "a.wav"], "a.wav: named twice"),
             (["--save", tmp_path / "taken", "--force"], "taken: exists and is not a file"),
             (["--model", tmp_path / "missing.safetensors"], "missing.safetensors"),
             (["--output-device", "nosuch", "--save", tmp_path / "b.wav"], "--output-device nosuch"),
             (["--save", tmp_path / "c.xyz"], "c.xyz: cannot write .xyz files")]
    for options, problem in cases:
        proc, err, _ = device.play(["enhance", "--model", path, "--duration", 0.1, *options], voice(0.1), timeout=120)
        lines = [line for line in err.splitlines() if line.strip()]
        assert proc.returncode == 1 and lines[-1].startswith("error: ") and problem in lines[-1], err
        assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".wav") == []


def _stream_without_a_device(home: Path, *args: str) -> subprocess.CompletedProcess:
    """``audiokit stream ARGS`` with ``home`` as HOME (its ALSA configuration)."""
    env = dict(os.environ, HOME=str(home), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "audiokit.cli.main", "stream", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_no_sound_system_or_no_device_is_one_line(tmp_path):
    """A broken ~/.asoundrc (PortAudio cannot start) and a machine with no audio device at all: one line, status
    1, for the device list as for a stream (issue 18)."""
    broken, empty = tmp_path / "broken", tmp_path / "empty"
    for home in (broken, empty):
        home.mkdir()
    (broken / ".asoundrc").write_text("pcm.!default { type")  # cut off
    (empty / ".asoundrc").write_text("")
    done = _stream_without_a_device(broken, "--list-devices")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: the sound system cannot start (check its configuration, e.g. "
                                  "~/.asoundrc): Error initializing PortAudio") and done.stderr.count("\n") == 1
    probe = subprocess.run([sys.executable, "-c", "import sounddevice; print(len(sounddevice.query_devices()))"],
                           env=dict(os.environ, HOME=str(empty)), capture_output=True, text=True, timeout=60)
    if probe.stdout.strip() != "0":
        pytest.skip("this machine has audio devices (an ALSA configuration cannot hide its sound cards)")
    for args in (["--list-devices"], ["enhance", "--duration", "0.1"]):
        done = _stream_without_a_device(empty, *args)
        assert done.returncode == 1 and done.stdout == "", args
        assert done.stderr == ("error: no audio devices found (no sound card, or the sound system's configuration, "
                               "e.g. ~/.asoundrc, defines none)\n"), args


def test_wrong_model_kind_names_the_model(device, tiny_model):
    _, path = tiny_model
    proc, err, _ = device.play(["separate", "--model", path, "--duration", 0.1], voice(0.1), timeout=120)
    assert proc.returncode == 1
    assert err.strip().splitlines()[-1] == f"error: {path}: FRCRN is not a separation model (use enhance)"


@pytest.mark.slow
@pytest.mark.parametrize("windows", [2, 6])  # the 3rd window fails while live, the 7th in the delayed tail
def test_a_model_that_fails_mid_stream_leaves_no_files(device, tmp_path, windows):
    path = tmp_path / "twospeakers.safetensors"
    save_pretrained(torch.nn.ParameterDict({"gain": torch.nn.Parameter(torch.tensor(0.25))}), path,
                    "twospeakers", {"gain": 0.25})
    out = tmp_path / "out"
    out.mkdir()
    proc, err, _ = device.play(["separate", "--model", path, "--overload", "wait", "--duration", 1.0,
                                "--window-ms", 200,
                                "--record", out / "rec.wav", "--save", out / "sep.wav"], voice(1.0), timeout=120,
                               TWOSPEAKERS_BREAK_AFTER=str(windows))  # 1 s live: 6 windows of 0.2 s every 0.15 s
    assert proc.returncode == 1
    assert err.strip().splitlines()[-1] == "error: model failed during streaming: the model broke"
    assert list(out.iterdir()) == []  # no outputs, no temporary files


def test_an_error_in_the_audio_callback_is_one_line_and_keeps_the_files(device, tiny_model, tmp_path):
    """An exception in the sounddevice callback (here the task's fallback for a late block) ends the stream as
    Ctrl-C does (the files complete, with what was streamed), then one error line and status 1; not a cffi
    traceback and status 0."""
    _, path = tiny_model
    rec, save = tmp_path / "rec.wav", tmp_path / "out.wav"
    proc, err, _ = device.play(["fragile", "--model", path, "--extra-load-ms", 20, "--duration", 2.0,
                                "--record", rec, "--save", save], voice(2.0), timeout=120)
    assert proc.returncode == 1, err
    assert "Traceback" not in err and "cffi" not in err, err
    lines = err.strip().splitlines()
    assert lines[-1] == "error: streaming failed: RuntimeError: the fallback broke (the stream stopped there; "\
                        "the files hold what it produced)", err
    assert [line for line in lines if line.startswith("error:")] == lines[-1:]
    latency, _ = latencies(err)
    assert 0 < sf.info(rec).frames < 32000  # ended at the failure, long before --duration
    assert sf.info(save).frames == sf.info(rec).frames + latency
    assert not list(tmp_path.glob(".*.tmp*"))


def test_save_without_a_suffix_is_wav_and_no_files_at_all_is_fine(device, tiny_model, tmp_path):
    _, path = tiny_model
    proc, err, _ = device.play(["enhance", "--model", path, "--overload", "wait", "--duration", 0.2,
                                "--save", tmp_path / "out"], voice(0.2), timeout=120)
    assert proc.returncode == 0, err
    assert sf.info(tmp_path / "out").format == "WAV"
    proc, err, played = device.play(["enhance", "--model", path, "--overload", "wait", "--duration", 0.2], voice(0.2),
                                    timeout=120)  # speakers only
    assert proc.returncode == 0 and "done:" in err, err
    assert len(played) > 1600


@pytest.mark.slow
def test_a_task_emitting_frames_shows_and_saves_them(device, tmp_path):
    path = tmp_path / "framepower.safetensors"
    save_pretrained(torch.nn.ParameterDict({"gain": torch.nn.Parameter(torch.tensor(2.0))}), path, "framepower",
                    {"gain": 2.0})
    rec, save = tmp_path / "rec.wav", tmp_path / "power.npz"
    mic = voice(0.5, seed=3)
    proc, err, played = device.play(["power", "--model", path, "--overload", "wait", "--duration", 0.5,
                                     "--window-ms", 100, "--overlap-ms", 20, "--record", rec, "--save", save], mic)
    assert proc.returncode == 0, err
    assert played is None  # frames are not played: the device was opened for input only
    recorded, _ = sf.read(rec, dtype="float32")
    x = torch.from_numpy(recorded)
    expected = 2 * torch.nn.functional.pad(x, (0, (-len(x)) % 160)).unflatten(-1, (-1, 160)).pow(2).mean(-1)
    saved = np.load(save)
    assert saved["frames"].shape == (1, len(expected), 1) and float(saved["frame_rate"]) == 100
    assert list(saved["labels"]) == ["power"]
    np.testing.assert_allclose(saved["frames"][0, :, 0], expected.numpy(), rtol=1e-4, atol=1e-9)
    done = err[err.index("done:"):]
    assert re.search(r"\| power \d\.\d{6} \|", done), done  # the task's own report, from the latest frames
    proc, err, _ = device.play(["power", "--model", path, "--duration", 0.1, "--save", tmp_path / "p.wav"],
                               voice(0.1), timeout=120)
    assert proc.returncode == 1 and err.strip().splitlines()[-1].endswith("p.wav: frames are saved as .npz files")
