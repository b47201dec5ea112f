"""Edge cases of audiokit.audio.io and resample: bad files become AudioError, writes are atomic."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from audiokit.audio.io import find_audio_files, read_audio, write_audio
from audiokit.audio.resample import resample
from audiokit.errors import AudioError


def test_read_returns_channels_first_float32(make_wav):
    wav, rate = read_audio(make_wav("st.wav", seconds=0.25, sample_rate=22050, channels=2))
    assert wav.dtype == np.float32 and wav.shape == (2, int(0.25 * 22050)) and rate == 22050
    assert not np.allclose(wav[0], wav[1])


def _problem(path) -> str:
    with pytest.raises(AudioError) as info:
        read_audio(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert isinstance(info.value, ValueError)
    return info.value.problem


def test_missing_file(tmp_path):
    assert "no such file" in _problem(tmp_path / "nope.wav")


def test_garbage_bytes_named_wav(tmp_path):
    path = tmp_path / "garbage.wav"
    path.write_bytes(b"this is not audio at all " * 40)
    assert "not a readable audio file" in _problem(path)


def test_truncated_wav(make_wav):
    path = make_wav("cut.wav")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "truncated" in _problem(path)


def test_truncated_flac(make_wav):
    path = make_wav("cut.flac", seconds=1.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    problem = _problem(path)
    assert "truncated" in problem or "not a readable" in problem


@pytest.mark.parametrize("suffix,subtype", [(".ogg", "VORBIS"), (".opus", "OPUS")])
def test_truncated_ogg_and_opus(make_wav, tmp_path, suffix, subtype):
    """libsndfile reads a cut Ogg stream up to the cut and reports that as its length (issue 18)."""
    if subtype not in sf.available_subtypes("OGG"):
        pytest.skip(f"this libsndfile cannot write Ogg {subtype}")
    whole = tmp_path / f"whole{suffix}"
    voice = read_audio(make_wav("v.wav", seconds=2.0, sample_rate=48000))[0].T
    sf.write(whole, voice, 48000, format="OGG", subtype=subtype)
    assert read_audio(whole)[0].shape == (1, 96000)
    data = whole.read_bytes()
    last_page = data.rfind(b"OggS")
    cuts = {"half": len(data) // 2, "last page cut": len(data) - 10, "at a page boundary": last_page,
            "in a page header": last_page + 10}
    for name, cut in cuts.items():
        path = tmp_path / f"{name}{suffix}"
        path.write_bytes(data[:cut])
        assert _problem(path) == "truncated (the file ends before its Ogg stream does)", name


def test_empty_wav(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    assert "no samples" in _problem(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_float_wav(tmp_path, bad):
    path = tmp_path / "nan.wav"
    wav = np.zeros(800, np.float32)
    wav[100] = bad
    sf.write(path, wav, 16000, subtype="FLOAT")
    assert "NaN or Inf" in _problem(path)


def test_write_roundtrip_16bit_clips(tmp_path):
    wav = torch.linspace(-2, 2, 1600).reshape(1, -1)
    path = write_audio(tmp_path / "out" / "x.wav", wav, 16000)
    back, rate = read_audio(path)
    assert rate == 16000 and sf.info(path).subtype == "PCM_16"
    assert back.max() <= 1.0 and back.min() >= -1.0 and back.max() > 0.99
    np.testing.assert_allclose(back[0, 700:900], wav[0, 700:900].numpy(), atol=1e-4)


def test_write_refuses_overwrite_without_force(tmp_path):
    path = tmp_path / "x.wav"
    write_audio(path, np.zeros(160), 16000)
    with pytest.raises(AudioError, match="exists, use --force"):
        write_audio(path, np.ones(160) * 0.5, 16000)
    assert np.all(read_audio(path)[0] == 0)
    write_audio(path, np.ones(160) * 0.5, 16000, force=True)
    assert np.allclose(read_audio(path)[0], 0.5, atol=1e-4)


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    real_write = sf.SoundFile.write

    def broken_write(self, data):
        real_write(self, data[:10])  # half written
        raise RuntimeError("disk full")

    monkeypatch.setattr(sf.SoundFile, "write", broken_write)
    with pytest.raises(AudioError, match="disk full"):
        write_audio(tmp_path / "x.wav", np.zeros(160), 16000)
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_nan(tmp_path):
    with pytest.raises(AudioError, match="NaN"):
        write_audio(tmp_path / "x.wav", np.array([0.0, np.nan]), 16000)
    assert list(tmp_path.iterdir()) == []


def test_find_audio_files(make_wav, tmp_path):
    a = make_wav("in/a.wav", seconds=0.1)
    b = make_wav("in/sub/b.flac", seconds=0.1)
    (tmp_path / "in" / "notes.txt").write_text("x")
    c = make_wav("c.wav", seconds=0.1)
    missing = []
    found = find_audio_files([tmp_path / "in", str(tmp_path / "*.wav"), c, tmp_path / "ghost.wav",
                              str(tmp_path / "*.ogg")], on_missing=missing.append)
    assert found == [a, b, c]
    assert [str(e.path) for e in missing] == [str(tmp_path / "ghost.wav"), str(tmp_path / "*.ogg")]
    with pytest.raises(AudioError, match="ghost"):
        find_audio_files([tmp_path / "ghost.wav"])


def test_resample_identity_and_lengths():
    x = torch.randn(2, 4410)
    assert resample(x, 16000, 16000) is x
    y = resample(x, 44100, 16000)
    assert y.shape == (2, 1600)
    z = resample(x.numpy(), 44100, 16000)
    assert isinstance(z, np.ndarray) and np.allclose(z, y.numpy(), atol=1e-5)


def test_resample_keeps_a_tone():
    t = torch.arange(44100) / 44100
    y = resample(torch.sin(2 * torch.pi * 440 * t), 44100, 16000)
    expected = torch.sin(2 * torch.pi * 440 * torch.arange(16000) / 16000)
    assert torch.allclose(y[200:-200], expected[200:-200], atol=1e-2)


@pytest.mark.parametrize("hard_links", [True, False])
def test_move_into_place_never_replaces_without_asking(tmp_path, monkeypatch, hard_links):
    import errno
    import os

    from audiokit.audio.io import move_into_place

    if not hard_links:  # e.g. FAT or a network file system: the name is claimed with O_EXCL instead
        def no_link(src, dst):
            raise OSError(errno.EPERM, "Operation not permitted")
        monkeypatch.setattr(os, "link", no_link)
    tmp, target = tmp_path / ".t.tmp", tmp_path / "t.wav"
    tmp.write_bytes(b"new")
    target.write_bytes(b"theirs")
    with pytest.raises(FileExistsError):
        move_into_place(tmp, target, replace=False)
    assert target.read_bytes() == b"theirs" and tmp.read_bytes() == b"new"
    target.unlink()
    move_into_place(tmp, target, replace=False)
    assert target.read_bytes() == b"new" and not tmp.exists()
    tmp.write_bytes(b"newer")
    move_into_place(tmp, target, replace=True)
    assert target.read_bytes() == b"newer" and sorted(p.name for p in tmp_path.iterdir()) == ["t.wav"]


def test_write_audio_does_not_replace_a_file_written_meanwhile(tmp_path, monkeypatch):
    import audiokit.audio.io as io

    target = tmp_path / "x.wav"
    real_close = io.AudioWriter.close

    def close_then_race(self):
        real_close(self)
        target.write_bytes(b"another run")  # after the exists check, before the rename

    monkeypatch.setattr(io.AudioWriter, "close", close_then_race)
    with pytest.raises(AudioError, match="x.wav: exists, use --force"):
        write_audio(target, np.zeros(160), 16000)
    assert target.read_bytes() == b"another run" and [p.name for p in tmp_path.iterdir()] == ["x.wav"]
