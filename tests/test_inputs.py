"""Inputs that are not plain audio files, or one file under several names (issue 18): each said in one line,
each file processed once, nothing walked forever."""
from __future__ import annotations

import os

import pytest

from audiokit.audio.io import find_audio_files, read_audio
from audiokit.cli.batch import process_files
from audiokit.errors import AudioError


def half(x):
    return 0.5 * x


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error: ")]


def test_fifo_device_and_stdin_are_not_regular_files(make_wav, tmp_path, capsys):
    good = make_wav("good.wav")
    fifo = tmp_path / "fifo.wav"
    os.mkfifo(fifo)
    for path, kind in ((fifo, "a FIFO"), ("/dev/zero", "a character device")):
        with pytest.raises(AudioError, match=f"not a regular file \\({kind}\\)"):
            read_audio(path)  # at once: reading would wait for a writer, or never end
    status = process_files([fifo, "/dev/zero", "-", good], tmp_path / "out", "e", half, 16000, progress=False)
    assert status == 1
    assert _errors(capsys.readouterr().err) == [
        "error: -: not a regular file (standard input is not read: name the audio file)",
        f"error: {fifo}: not a regular file (a FIFO)",
        "error: /dev/zero: not a regular file (a character device)"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good_e.wav"]  # the rest of the batch is done


def test_stream_input_is_a_regular_file_too(tmp_path, capsys):
    """``stream TASK --input`` names one file: '-', a FIFO or a device is said as enhance says it."""
    from audiokit.cli.main import main

    fifo = tmp_path / "fifo.wav"
    os.mkfifo(fifo)
    for name, problem in (("-", "not a regular file (standard input is not read: name the audio file)"),
                          (str(fifo), "not a regular file (a FIFO)"),
                          ("/dev/zero", "not a regular file (a character device)")):
        assert main(["stream", "classify", "--input", name]) == 1
        assert capsys.readouterr().err == f"error: {name}: {problem}\n"


def test_one_file_under_several_names_is_processed_once(make_wav, tmp_path, capsys, monkeypatch):
    source = make_wav("in/a.wav")
    (tmp_path / "in" / "sub").mkdir()
    os.symlink("../a.wav", tmp_path / "in" / "sub" / "link.wav")
    os.symlink("..", tmp_path / "in" / "sub" / "loop")  # a folder loop: in/sub/loop/sub/loop/...
    os.symlink("self.wav", tmp_path / "in" / "self.wav")  # a link loop
    monkeypatch.chdir(tmp_path)
    names = ["in/a.wav", "./in/sub/../a.wav", str(source), "in/sub/link.wav", "in", "in/**/*.wav", "in/sub/loop/*"]
    assert find_audio_files(names) == [source.relative_to(tmp_path)]
    assert process_files(names, "out", "e", half, 16000, progress=False) == 0
    out, err = capsys.readouterr()
    assert _errors(err) == [] and out.count(" -> ") == 1
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a_e.wav"]
    assert process_files(["in/self.wav"], "out", "e", half, 16000, progress=False) == 1
    assert _errors(capsys.readouterr().err) == ["error: in/self.wav: is a symbolic link to nothing (broken, or a loop)"]
