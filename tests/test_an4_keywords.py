"""tools/an4_keywords.py on a small fake AN4 checkout: one-word utterances become 1 s clips of the loudest
second in the Speech Commands layout; other lines are skipped; an existing output is left alone."""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

TOOLS = Path(__file__).resolve().parents[1] / "tools"
RATE = 16000


@pytest.fixture
def tool(monkeypatch):
    monkeypatch.syspath_prepend(str(TOOLS))
    import an4_keywords
    return an4_keywords


def fake_an4(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc/an4_train.transcription").write_text(
        "<s> YES </s> (an1-fash-b)\n<s> RUBOUT T H R E E </s> (an2-fash-b)\n<s> REPEAT </s> (an3-mjwl-b)\n")
    (root / "etc/an4_test.transcription").write_text("<s> YES </s> (an9-fcaw-b)\n")
    for folder, uid in (("an4_clstk", "an1-fash-b"), ("an4_clstk", "an3-mjwl-b"), ("an4test_clstk", "an9-fcaw-b")):
        wav = np.zeros(int(2.5 * RATE), dtype=np.float32)
        wav[RATE:RATE + 4000] = 0.5  # the "word": 1.0 .. 1.25 s
        path = root / "wav" / folder / uid.split("-")[1] / f"{uid}.wav"
        path.parent.mkdir(parents=True)
        sf.write(path, wav, RATE)
    return root


def test_one_word_utterances_become_centred_one_second_clips(tool, tmp_path, capsys):
    out = tmp_path / "kw"
    assert tool.main([str(fake_an4(tmp_path / "an4")), str(out)]) == 0
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.wav"))
    assert files == ["repeat/mjwl_nohash_0.wav", "yes/fash_nohash_0.wav", "yes/fcaw_nohash_0.wav"]
    clip, rate = sf.read(out / "yes/fash_nohash_0.wav")
    assert rate == RATE and clip.shape == (RATE,) and abs(clip.sum() - 0.5 * 4000) < 1  # the whole word is in
    assert "3 clips of 3 speakers" in capsys.readouterr().out
    assert tool.main([str(tmp_path / "an4"), str(out)]) == 0  # already there: left alone
    assert "already there" in capsys.readouterr().out


def test_a_folder_that_is_not_an4_is_an_error(tool, tmp_path, capsys):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/an4_train.transcription").write_text("<s> HELLO WORLD </s> (an1-fash-b)\n")
    (tmp_path / "etc/an4_test.transcription").write_text("")
    assert tool.main([str(tmp_path), str(tmp_path / "out")]) == 1
    assert "no one-word utterances" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_loudest_second_pads_short_recordings(tool):
    short = np.ones(100, dtype=np.float32)
    assert tool.loudest_second(short).shape == (RATE,) and tool.loudest_second(short)[:100].sum() == 100
