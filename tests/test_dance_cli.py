"""``audiokit dance`` and ``audiokit.dance`` / ``audiokit.dance_file``: a tiny random-weight DanceGenerator (8 kHz)
dancing to 2 s of clicks and tones at 22050 Hz in stereo (resampled and mixed down); outputs written all or none,
never over an existing file without --force, never over an input."""
from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch
from tiny_model import save_tiny, save_tiny_dance

import audiokit
from audiokit.cli.main import main
from audiokit.dancing import STYLE_CHOICES
from audiokit.errors import AudioError, ModelError, MotionFileError
from audiokit.hub import registry
from audiokit.models.dance import STYLES
from audiokit.motion.bvh import read_bvh
from audiokit.motion.files import write_together

torch.set_num_threads(1)  # the machine is shared
RATE = 22050
SECONDS = 2.03
# 2.03 s at 22050 Hz -> ceil(44762 * 8000 / 22050) = 16241 samples at the model's 8 kHz -> floor(16241 / 320) = 50
# poses: one per whole 40 ms, the last partial frame dropped
FRAMES = 50
SMALL = ["--size", "64"]  # videos of 64 x 64 pixels: fast


def music(seconds: float = SECONDS, seed: int = 0) -> np.ndarray:
    """``[T, 2]`` float32 at :data:`RATE`: a 440 Hz tone (left) and a 660 Hz one (right) with clicks every 0.5 s."""
    t = np.arange(round(seconds * RATE)) / RATE
    clicks = (np.arange(t.size) % (RATE // 2) < 40) * np.random.default_rng(seed).uniform(0.3, 0.9)
    return np.stack([0.2 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 660 * t)], 1).astype(np.float32) \
        + clicks[:, None].astype(np.float32)


def write_music(path, seconds: float = SECONDS, seed: int = 0):
    sf.write(path, music(seconds, seed), RATE, subtype="FLOAT")
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_tiny_dance(tmp_path_factory.mktemp("model") / "tiny_dance.safetensors")


@pytest.fixture
def song(tmp_path):
    return write_music(tmp_path / "song.wav")


def dance(*args) -> int:
    return main(["dance", *map(str, args)])


def streams(path) -> str:
    """The stream lines ffmpeg prints for a media file (``Stream #0:0...: Video: ...``)."""
    import imageio_ffmpeg
    result = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                            capture_output=True, text=True)
    return "\n".join(line for line in result.stderr.splitlines() if "Stream #" in line or "Duration" in line)


def test_bvh_alone_writes_one_pose_per_whole_frame(song, tmp_path, model_file, capsys):
    assert dance(song, "-o", tmp_path / "out", "--bvh", "--model", model_file) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["song.bvh"]
    bvh = read_bvh(tmp_path / "out" / "song.bvh")
    assert bvh.frames == FRAMES and bvh.frame_time == pytest.approx(0.04)
    assert re.fullmatch(rf"{re.escape(str(song))} -> {re.escape(str(tmp_path / 'out' / 'song.bvh'))} \(\d+\.\d s\)",
                        capsys.readouterr().out.strip())


def test_default_writes_bvh_and_mp4_with_the_music_beside_the_input(song, model_file):
    assert dance(song, "--model", model_file, *SMALL) == 0
    assert sorted(p.name for p in song.parent.iterdir()) == ["song.bvh", "song.mp4", "song.wav"]
    info = streams(song.with_suffix(".mp4"))
    assert "Video: h264" in info and "Audio: aac" in info and "stereo" in info
    assert "Duration: 00:00:02.0" in info  # 50 frames of 40 ms


def test_gif_alone(song, model_file):
    assert dance(song, "--gif", "--model", model_file, *SMALL) == 0
    gif = song.with_suffix(".gif")
    assert sorted(p.name for p in song.parent.iterdir()) == ["song.gif", "song.wav"]
    assert gif.read_bytes()[:6] == b"GIF89a"


def test_an_existing_output_fails_its_input_only(tmp_path, model_file, capsys):
    a, b = write_music(tmp_path / "a.wav"), write_music(tmp_path / "b.wav", seed=1)
    a.with_suffix(".bvh").write_text("mine")
    assert dance(a, b, "--bvh", "--model", model_file) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: {a.with_suffix('.bvh')}: exists, use --force", "1 input(s) failed"]
    assert a.with_suffix(".bvh").read_text() == "mine" and read_bvh(b.with_suffix(".bvh")).frames == FRAMES
    assert dance(a, "--bvh", "--model", model_file, "--force") == 0
    assert read_bvh(a.with_suffix(".bvh")).frames == FRAMES


def test_force_never_writes_over_an_input(tmp_path, model_file, capsys):
    clip = write_music(tmp_path / "clip.wav")
    disguised = clip.rename(tmp_path / "clip.mp4")  # music read by its content: its MP4 output would be itself
    before = disguised.read_bytes()
    assert dance(disguised, "--model", model_file, "--force", *SMALL) == 1
    assert capsys.readouterr().err.splitlines()[0] == f"error: {disguised}: is also an input; not overwritten"
    assert disguised.read_bytes() == before and not (tmp_path / "clip.bvh").exists()


def test_bad_music_is_one_error_line_and_the_rest_is_danced(tmp_path, song, model_file, capsys):
    (tmp_path / "bad.wav").write_bytes(b"RIFF" + bytes(range(256)) * 4)
    short = write_music(tmp_path / "short.wav", seconds=0.05)
    assert dance(tmp_path / "bad.wav", short, song, "--bvh", "--model", model_file) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and err[0].startswith(f"error: {tmp_path / 'bad.wav'}: not a readable audio file")
    assert err[1] == f"error: {short}: is too short to dance to (0.050 s; a dance needs at least 0.08 s)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.wav", "short.wav", "song.bvh", "song.wav"]


def test_one_failing_output_leaves_nothing_of_its_input(song, model_file, monkeypatch, capsys):
    def broken(path, frames, fps, audio=None, palette=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("audiokit.motion.render._encode", broken)
    assert dance(song, "--model", model_file, *SMALL) == 1
    assert capsys.readouterr().err.splitlines()[0] == \
        f"error: {song.with_suffix('.mp4')}: cannot write (no space left on device)"
    assert sorted(p.name for p in song.parent.iterdir()) == ["song.wav"]  # no BVH, no temporary files


def test_outputs_are_placed_all_or_none_and_never_over_a_file_made_meanwhile(tmp_path):
    first, second = tmp_path / "x.bvh", tmp_path / "x.mp4"

    def other_run_wins(tmp):  # another run puts its file in place while this one writes
        tmp.write_text("ours")
        second.write_text("theirs")

    with pytest.raises(MotionFileError, match="x.mp4: exists, use --force"):
        write_together([(first, lambda tmp: tmp.write_text("ours")), (second, other_run_wins)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.mp4"] and second.read_text() == "theirs"
    assert write_together([(first, lambda tmp: tmp.write_text("ours")), (second, lambda tmp: tmp.write_text("ours"))],
                          force=True) == [first, second]
    assert second.read_text() == "ours"


def test_seed_gives_the_same_dance_and_leaves_torch_alone(song, tmp_path, model_file):
    for folder in ("one", "two"):
        assert dance(song, "--bvh", "--seed", 7, "-o", tmp_path / folder, "--model", model_file) == 0
    assert (tmp_path / "one" / "song.bvh").read_bytes() == (tmp_path / "two" / "song.bvh").read_bytes()
    dancer = audiokit.load_dancer(str(model_file))  # (building a model draws from the generator)
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    audiokit.dance(song, model=dancer, seed=123)
    torch.testing.assert_close(torch.rand(3), expected)


def test_api_positions_from_files_and_arrays(song, tmp_path, model_file):
    dancer = audiokit.load_dancer(str(model_file))
    positions = audiokit.dance(song, model=dancer, style="waltz")
    assert positions.shape == (FRAMES, 23, 3) and positions.dtype == np.float32 and np.isfinite(positions).all()
    np.testing.assert_allclose(audiokit.dance(music().T, RATE, model=dancer, style="waltz"), positions, atol=1e-4)
    assert not np.allclose(audiokit.dance(song, model=dancer, style="tango"), positions)
    assert audiokit.dance_file(song, tmp_path / "api", formats=["bvh"], model=dancer) == [tmp_path / "api" / "song.bvh"]
    with pytest.raises(AudioError, match="exists, use force=True"):
        audiokit.dance_file(song, tmp_path / "api", formats=["bvh"], model=dancer)
    with pytest.raises(ModelError, match="style 'polka'"):
        audiokit.dance(song, model=dancer, style="polka")
    assert STYLE_CHOICES == ("auto", *STYLES)  # the command line's names are the model's, in its order


class Swayer(torch.nn.Module):
    """A dance model that sways along x at 1 Hz whatever the music (it stops every 0.5 s from 0.25 s)."""

    sample_rate, fps = 8000, 25.0

    def dance(self, wav, style=None):
        from test_dance_metrics import swaying
        return swaying(len(wav) // 320 / self.fps).astype(np.float32)


def test_beat_sync_moves_the_dance_onto_the_music_and_can_be_turned_off(tmp_path):
    """By default the finished dance is retimed so that its stops land on the music's beats (librosa's tracker on
    the music as the model heard it); ``beat_sync=False`` keeps the model's own timing."""
    from audiokit.metrics.dance import beat_f_measure, motion_beats
    rate, beats = 16000, np.arange(0.35, 8.0, 0.5)  # 120 beats per minute, 0.1 s after each of the model's stops
    wav = np.zeros(8 * rate, np.float32)
    hit = np.random.default_rng(0).normal(size=800) * np.exp(-np.arange(800) / 150)
    for start in beats:
        wav[int(start * rate):int(start * rate) + 800] += hit
    dancer = audiokit.load_dancer(audiokit.dancing.Dancer(Swayer()))
    raw = audiokit.dance(wav, rate, model=dancer, beat_sync=False)
    np.testing.assert_array_equal(raw, Swayer().dance(np.zeros(8 * 8000)))
    synced = audiokit.dance(wav, rate, model=dancer)
    assert synced.shape == raw.shape and synced.dtype == np.float32
    assert beat_f_measure(beats, motion_beats(raw, 25.0)) < 0.1
    assert beat_f_measure(beats, motion_beats(synced, 25.0)) > 0.8


def test_beat_sync_on_the_shortest_and_on_silent_music(model_file):
    """Two frames of music (too short for the beat tracker) and silence dance without a warning or an error."""
    import warnings
    dancer = audiokit.load_dancer(str(model_file))
    for wav in (np.full(640, 0.1, np.float32), np.zeros(8000, np.float32)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            synced = audiokit.dance(wav, 8000, model=dancer)
        np.testing.assert_array_equal(synced, audiokit.dance(wav, 8000, model=dancer, beat_sync=False))


def test_no_beat_sync_option(song, tmp_path, model_file):
    assert dance(song, "--bvh", "--no-beat-sync", "-o", tmp_path / "cli", "--model", model_file) == 0
    audiokit.dance_file(song, tmp_path / "api", ["bvh"], model=str(model_file), beat_sync=False)
    assert (tmp_path / "cli" / "song.bvh").read_bytes() == (tmp_path / "api" / "song.bvh").read_bytes()


def test_default_model_and_model_kind(song, tmp_path, model_file, monkeypatch, capsys):
    monkeypatch.setitem(registry.DEFAULT_MODELS, "dance", None)  # a task whose model has not shipped
    assert dance(song) == 1
    assert capsys.readouterr().err.strip() == \
        "error: no default dance model is shipped yet; name one with --model (or model=)"
    frcrn = save_tiny(tmp_path / "frcrn.safetensors")
    assert dance(song, "--model", frcrn) == 1
    assert capsys.readouterr().err.strip() == f"error: {frcrn}: FRCRN is not a dance model (it has no dance method)"
    monkeypatch.setitem(registry.DEFAULT_MODELS, "dance", str(model_file))  # once a model ships
    assert dance(song, "--bvh") == 0 and read_bvh(song.with_suffix(".bvh")).frames == FRAMES
