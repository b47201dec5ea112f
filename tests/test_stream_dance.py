"""``audiokit stream dance``: poses generated frame by frame as the music arrives (the dance adapter through the block
pipeline, as live audio runs it), equal to the offline generation whatever the blocks; from a file (``--input``) and
through the ALSA ``file`` device, every pose sent over OSC to a local server, the poses saved as BVH at the end.

A tiny random-weight DanceGenerator (:func:`tiny_model.tiny_dance`) stands in for a trained one.
"""
from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest
import soundfile as sf
import torch
from tiny_model import save_tiny, save_tiny_dance, tiny_dance

from audiokit.audio.dc import remove_dc
from audiokit.cli.main import main
from audiokit.hub import registry
from audiokit.models.dance import DanceGenerator
from audiokit.motion.bvh import read_bvh
from audiokit.streaming.adapters import DanceAdapter
from audiokit.streaming.outputs import OutputSpec
from audiokit.streaming.pipeline import BlockPipeline

torch.set_num_threads(1)  # the machine is shared


def music(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Clicks four times a second over a quiet tone and noise, float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    wav = 0.1 * np.sin(2 * np.pi * 220 * t) + 0.02 * rng.standard_normal(t.size)
    wav[(t * 4) % 1 < 0.01] += 0.5
    return wav.astype(np.float32)


class OSCServer:
    """A local OSC server on a free UDP port, in a thread: ``messages`` holds ``(address, *args)`` as they come."""

    def __init__(self):
        from pythonosc.dispatcher import Dispatcher
        from pythonosc.osc_server import BlockingOSCUDPServer

        self.messages: list = []
        dispatcher = Dispatcher()
        dispatcher.set_default_handler(lambda address, *args: self.messages.append((address, *args)))
        self.server = BlockingOSCUDPServer(("127.0.0.1", 0), dispatcher)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "OSCServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout: float = 10.0) -> list:
        """The messages once ``count`` have come (or ``timeout`` seconds passed), and a moment more for any extra."""
        deadline = time.time() + timeout
        while len(self.messages) < count and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        return list(self.messages)


def check_poses(messages: list, expected: np.ndarray, address: str = "/audiokit/pose") -> None:
    """The OSC pose messages are the frames ``expected`` [N, 23, 3], one each, in order, in the documented layout."""
    assert len(messages) == len(expected)
    assert {m[0] for m in messages} == {address}
    assert all(len(m) == 3 + 69 and isinstance(m[1], int) and all(isinstance(v, float) for v in m[2:])
               for m in messages)
    assert [m[1] for m in messages] == list(range(len(expected)))
    np.testing.assert_allclose([m[2] for m in messages], np.arange(len(expected)) / 25, rtol=1e-6)
    poses = np.array([m[3:] for m in messages], np.float32).reshape(-1, 23, 3)
    np.testing.assert_allclose(poses, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


@pytest.fixture(scope="module")
def dance_file(tmp_path_factory):
    return save_tiny_dance(tmp_path_factory.mktemp("model") / "dance.safetensors")


def test_streamed_poses_equal_offline_in_blocks_of_any_size():
    model = tiny_dance()
    wav = music(2.0)
    for style in (None, "auto"):
        offline = model.dance(remove_dc(wav, 16000), style)  # [50, 23, 3]: the model never hears an offset
        adapter = DanceAdapter(model, style=style)
        assert adapter.output == OutputSpec.frames(25, (23, 3))
        for sizes in ([160], np.random.default_rng(1).integers(1, 1500, 100)):  # 10 ms blocks, random ones
            pipeline = BlockPipeline(adapter.open, 16000, 16000, adapter.output, block=160)
            assert pipeline.latency == adapter.latency_samples == model.latency_samples == 640 + 64 + 3 * 160
            out, start, k = [], 0, 0
            while start < len(wav):
                size = int(sizes[k % len(sizes)])
                out.append(pipeline.feed(torch.from_numpy(wav[start:start + size])[None]))
                start, k = start + size, k + 1
            out.append(pipeline.flush())
            streamed = torch.cat(out, 2)[0, 0].numpy()
            assert streamed.shape == offline.shape == (50, 23, 3)
            np.testing.assert_allclose(streamed, offline, rtol=0, atol=1e-5 * np.abs(offline).max())
    # a last partial frame is completed with silence (offline drops it)
    stream = adapter.open()
    tail = torch.cat([stream.feed(torch.from_numpy(music(0.1))[None]), stream.flush()], 2)
    assert tail.shape == (1, 1, 3, 23, 3)
    # the recipe's model: one 40 ms motion frame plus its 86 ms spectrum window
    assert DanceGenerator().latency_samples == 640 + 256 + 7 * 160 == 2016


def test_stream_dance_from_a_file_sends_every_pose_over_osc_and_saves_it(dance_file, tmp_path, capsys):
    wav = music(1.2)
    song = tmp_path / "song.wav"
    sf.write(song, wav, 16000, subtype="FLOAT")
    bvh, npz = tmp_path / "dance.bvh", tmp_path / "dance.npz"
    with OSCServer() as server:
        assert main(["stream", "dance", "--input", str(song), "--model", str(dance_file), "--style", "auto",
                     "--osc", f"127.0.0.1:{server.port}", "--save", str(bvh), "--save", str(npz)]) == 0
        messages = server.wait_for(30)
    expected = tiny_dance().dance(remove_dc(wav, 16000), "auto")
    check_poses(messages, expected)
    saved = np.load(npz)
    np.testing.assert_allclose(saved["frames"][0], expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    motion = read_bvh(bvh)
    assert motion.frames == 30 and motion.fps == pytest.approx(25)
    err = capsys.readouterr().err
    assert re.search(r"stream dance: 16000 Hz .* latency 1184 samples \(74\.0 ms\)", err), err
    assert "frames 30 | OSC sent 30" in err.splitlines()[-1]
    # another address; an existing file is refused before anything is sent
    with OSCServer() as server:
        assert main(["stream", "dance", "--input", str(song), "--model", str(dance_file), "--duration", "0.4",
                     "--osc", f"localhost:{server.port}", "--osc-address", "/body/joints"]) == 0
        check_poses(server.wait_for(10), tiny_dance().dance(remove_dc(wav[:6400], 16000)), "/body/joints")
        assert main(["stream", "dance", "--input", str(song), "--model", str(dance_file),
                     "--osc", f"127.0.0.1:{server.port}", "--save", str(bvh)]) == 1
        assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {bvh}: exists, use --force"
        assert len(server.wait_for(11, timeout=0.3)) == 10


def test_a_motion_file_that_cannot_be_written_is_said_before_the_stream(dance_file, tmp_path, capsys):
    """A --save BVH/MP4/GIF is written when the stream ends: a folder where it cannot be is said at the start (as
    for the .npz and audio files, opened at once), not after the whole stream; no folder is left made."""
    song = tmp_path / "song.wav"
    sf.write(song, music(0.4), 16000)
    (tmp_path / "afile").write_text("x")
    for save in (tmp_path / "afile" / "x.bvh", tmp_path / "afile" / "sub" / "x.mp4"):
        assert main(["stream", "dance", "--input", str(song), "--model", str(dance_file), "--save", str(save)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: {save}: ") and err.count("\n") == 1, err  # no "stream dance: ..." line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "song.wav"]


def test_the_saved_files_of_a_stream_are_written_all_or_none(dance_file, tmp_path, capsys, monkeypatch):
    """One --save file that cannot be written (a full disk while the video is encoded) takes the others back (the
    BVH, the frames), as audiokit dance does: a stream that fails leaves no output files."""
    song = tmp_path / "song.wav"
    sf.write(song, music(0.4), 16000)

    def full(path, frames, fps, audio=None, palette=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("audiokit.motion.render._encode", full)
    saves = [tmp_path / "dance.bvh", tmp_path / "dance.mp4", tmp_path / "dance.npz"]
    assert main(["stream", "dance", "--input", str(song), "--model", str(dance_file),
                 *[arg for path in saves for arg in ("--save", str(path))]]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"error: {saves[1]}: cannot write (no space left on device)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.wav"]  # nothing, not even temporary files


@pytest.mark.parametrize("options, problem", [
    (["--osc", "127.0.0.1"], "--osc 127.0.0.1: want HOST:PORT with a port from 1 to 65535"),
    (["--osc", "127.0.0.1:0"], "--osc 127.0.0.1:0: want HOST:PORT with a port from 1 to 65535"),
    (["--osc", "127.0.0.1:65536"], "--osc 127.0.0.1:65536: want HOST:PORT"),
    (["--osc", "localhost:port"], "--osc localhost:port: want HOST:PORT"),
    (["--osc", "no-such-host.invalid:9000"], "--osc no-such-host.invalid:9000: cannot resolve no-such-host.invalid"),
    (["--osc", "127.0.0.1:9000", "--osc-address", "pose"], "--osc-address pose: not an OSC address"),
    (["--osc-address", "/pose"], "--osc-address /pose: needs --osc HOST:PORT"),
    (["--save", "a.wav"], "a.wav: frames are saved as .npz or .bvh or .mp4 or .gif files"),
    (["--save", "a.npz", "--save", "b.npz"], "--save: one .npz file, 2 given"),
    (["--threshold", "0.5"], "--threshold 0.5: not used by stream dance"),
    (["--atten-lim", "10"], "--atten-lim 10: not used by stream dance"),
    (["--record", "r.wav"], "--record: not with --input (a file is the input)"),
])
def test_bad_options_are_one_line_errors_before_any_audio(dance_file, tmp_path, capsys, monkeypatch, options,
                                                           problem):
    monkeypatch.chdir(tmp_path)
    song = tmp_path / "song.wav"
    sf.write(song, music(0.2), 16000)
    assert main(["stream", "dance", "--input", str(song), "--model", str(dance_file), *options]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and problem in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.wav"]
    assert main(["stream", "dance", "--model", str(dance_file), "--realtime"]) == 1  # no file to pace
    assert capsys.readouterr().err == "error: --realtime: only with --input FILE (a device keeps its own pace)\n"


def test_stream_dance_needs_a_dance_model(tmp_path, capsys, monkeypatch):
    song = tmp_path / "song.wav"
    sf.write(song, music(0.2), 16000)
    monkeypatch.setitem(registry.DEFAULT_MODELS, "dance", None)
    assert main(["stream", "dance", "--input", str(song)]) == 1
    assert capsys.readouterr().err == ("error: no default dance model is shipped yet; name one with --model "
                                       "(or model=)\n")
    assert main(["stream", "dance", "--input", str(song), "--model", "no_such_model"]) == 1
    assert capsys.readouterr().err.startswith("error: no_such_model: unknown model 'no_such_model'; known: ")
    frcrn = save_tiny(tmp_path / "frcrn.safetensors")
    assert main(["stream", "dance", "--input", str(song), "--model", str(frcrn)]) == 1
    assert capsys.readouterr().err.startswith(f"error: {frcrn}: FRCRN is not a dance generator")
    assert main(["stream", "enhance", "--input", str(song), "--model", str(frcrn), "--osc", "127.0.0.1:9000"]) == 1
    assert capsys.readouterr().err == "error: --osc: stream enhance gives audio, not frames\n"


@pytest.mark.slow
def test_stream_dance_through_the_sound_device_sends_the_offline_poses(dance_file, tmp_path):
    pytest.importorskip("sounddevice")
    from test_realtime_device import Device, voice

    device = Device(tmp_path)
    rec, bvh = tmp_path / "rec.wav", tmp_path / "dance.bvh"
    with OSCServer() as server:
        proc, err, played = device.play(["dance", "--model", dance_file, "--overload", "wait", "--duration", 0.64,
                                         "--osc", f"127.0.0.1:{server.port}", "--record", rec, "--save", bvh],
                                        voice(0.64, seed=4), timeout=120)
        assert proc.returncode == 0, err
        messages = server.wait_for(16)
    assert played is None  # poses are not played
    recorded, _ = sf.read(rec, dtype="float32")
    assert len(recorded) == 10240
    check_poses(messages, tiny_dance().dance(remove_dc(recorded, 16000)))
    assert read_bvh(bvh).frames == 16
    assert re.search(r"stream dance: 16000 Hz .* latency \d+ samples .* \+ model 1184", err), err
    assert "frames 16 | OSC sent 16" in err[err.index("done:"):]


def test_the_saved_files_of_a_live_stream_are_written_all_or_none(dance_file, tmp_path):
    pytest.importorskip("sounddevice")
    from test_realtime_device import Device, voice

    device, out = Device(tmp_path), tmp_path / "out"
    out.mkdir()
    saves = [out / "dance.bvh", out / "dance.mp4", out / "dance.npz"]
    proc, err, _ = device.play(["dance", "--model", dance_file, "--overload", "wait", "--duration", 0.3,
                                "--record", out / "rec.wav", *[arg for path in saves for arg in ("--save", path)]],
                               voice(0.3, seed=5), timeout=120, FULL_DISK_FOR_VIDEOS="1")
    assert proc.returncode == 1, err
    assert err.strip().splitlines()[-1] == f"error: {saves[1]}: cannot write (no space left on device)", err
    assert list(out.iterdir()) == []  # the stream failed: no outputs, no temporary files


@pytest.mark.slow
def test_sigterm_ends_a_file_stream_and_keeps_what_was_generated(dance_file, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    song = tmp_path / "song.wav"
    sf.write(song, music(20.0), 16000)
    bvh, mp4 = tmp_path / "dance.bvh", tmp_path / "dance.mp4"
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]))  # this tree's audiokit
    with OSCServer() as server:
        proc = subprocess.Popen([sys.executable, "-m", "audiokit.cli.main", "stream", "dance", "--input", str(song),
                                 "--model", str(dance_file), "--realtime", "--osc", f"127.0.0.1:{server.port}",
                                 "--save", str(bvh), "--save", str(mp4)], env=env, cwd=repo,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        server.wait_for(10, timeout=60)  # a quarter of a second or more into the song
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        messages = server.wait_for(0)
    assert proc.returncode == 0, err
    assert "interrupted: done:" in err and f"frames {len(messages)} | OSC sent {len(messages)}" in err
    assert 10 <= len(messages) < 500
    assert read_bvh(bvh).frames == len(messages) and mp4.stat().st_size > 0
    assert not list(tmp_path.glob(".*tmp*"))
