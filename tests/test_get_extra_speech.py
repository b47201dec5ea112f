"""tools/get_extra_speech.py against local git repositories (no network): sparse copy, flattening,
folders already there left alone, a failing clone reported."""
import subprocess
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def git_repo(root: Path, files: dict) -> str:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for cmd in (["init", "-q"], ["add", "-A"],
                ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "data"]):
        subprocess.run(["git", "-C", str(root), *cmd], check=True)
    return root.as_uri()


@pytest.fixture
def tool(monkeypatch):
    monkeypatch.syspath_prepend(str(TOOLS))
    import get_extra_speech
    return get_extra_speech


def test_fetch_copies_only_the_audio_folder(tool, tmp_path):
    url = git_repo(tmp_path / "an4", {"wav/an4_clstk/fash/a.wav": b"RIFF1", "wav/an4test_clstk/fcaw/b.wav": b"RIFF2",
                                      "wav/README": b"text", "etc/other.wav": b"RIFF3"})
    target = tmp_path / "out" / "an4"
    assert tool.fetch(url, "wav", target, flatten=False) == 2
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == [
        "an4_clstk/fash/a.wav", "an4test_clstk/fcaw/b.wav"]
    assert (target / "an4_clstk/fash/a.wav").read_bytes() == b"RIFF1"


def test_main_flattens_skips_existing_and_reports_failure(tool, tmp_path, monkeypatch, capsys):
    url = git_repo(tmp_path / "libri", {"audio/x/19-198-0001.flac": b"fLaC1", "audio/y/26-495-0000.flac": b"fLaC2"})
    out = tmp_path / "extdata"
    (out / "an4").mkdir(parents=True)
    (out / "an4" / "kept.wav").write_bytes(b"RIFF")
    monkeypatch.setattr(tool, "SOURCES", {"an4": (url, "audio", False), "libri251": (url, "audio", True)})
    assert tool.main([str(out)]) == 0
    assert sorted(p.name for p in (out / "libri251").iterdir()) == ["19-198-0001.flac", "26-495-0000.flac"]
    assert [p.name for p in (out / "an4").iterdir()] == ["kept.wav"]
    assert "already there" in capsys.readouterr().out
    monkeypatch.setattr(tool, "SOURCES", {"gone": ((tmp_path / "missing").as_uri(), "audio", False)})
    assert tool.main([str(out)]) == 1
    assert "error:" in capsys.readouterr().err and not (out / "gone").exists()
