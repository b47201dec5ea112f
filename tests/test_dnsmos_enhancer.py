"""tools/dnsmos_enhancer.py: seeded mixtures at their SNR and level, the subsets it averages, noisy and enhanced
scored apart, its held-out noise list that of the recipe and the model card, one-line errors."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import speechlike

from audiokit.api import Enhancer

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / ".." / "shared"
DNSMOS = SHARED / "data" / "dnsmos" / "DNSMOS"


@pytest.fixture
def tool(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "tools"))
    import dnsmos_enhancer
    return dnsmos_enhancer


class Halves(torch.nn.Module):
    """Stand-in enhancer: half the input."""
    sample_rate = 16000

    def enhance(self, wav):
        return wav / 2


def fake_data(root: Path, tool) -> Path:
    """../shared/data's layout with short generated files: 3 clean clips, the noise files, the 48 kHz recording."""
    for index, seconds in enumerate((0.6, 0.9, 1.2)):
        (root / tool.CLEAN).mkdir(parents=True, exist_ok=True)
        sf.write(root / tool.CLEAN / f"p232_{index:03}.flac", speechlike(seconds, 16000, seed=index), 16000)
    for index, name in enumerate(tool.HELD_OUT + (tool.RECORDING_NOISE,)):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        rate = 48000 if name == tool.RECORDING_NOISE else 16000
        sf.write(root / name, 0.1 * np.random.default_rng(index).standard_normal(rate * 2), rate)
    sf.write(root / tool.RECORDING, speechlike(0.6, 48000, seed=9), 48000)
    return root


def test_mixtures_are_seeded_at_their_snr_and_level(tool, tmp_path):
    data = fake_data(tmp_path, tool)
    clean_files = sorted((data / tool.CLEAN).iterdir())
    noise_files = [data / name for name in tool.HELD_OUT[:2]] + [data / tool.RECORDING_NOISE]  # (one at 48 kHz)
    mixed = tool.mixtures(clean_files, noise_files, seed=3)
    assert len(mixed) == 9 and sum(name.endswith("@5dB") for name in mixed) == 3
    again, other = tool.mixtures(clean_files, noise_files, seed=3), tool.mixtures(clean_files, noise_files, seed=4)
    assert all(np.array_equal(mixed[n][0], again[n][0]) for n in mixed)
    assert not all(np.array_equal(mixed[n][0], other[n][0]) for n in mixed if n in other)
    for name, (noisy, noise_file) in mixed.items():
        clean = sf.read(data / tool.CLEAN / f"{name.split('+')[0]}.flac", dtype="float32")[0]
        assert noisy.size == clean.size and noise_file in noise_files
        speech = clean * np.dot(noisy, clean) / np.dot(clean, clean)  # (noise is independent of the speech)
        snr = 10 * np.log10(np.sum(speech ** 2) / np.sum((noisy - speech) ** 2))
        assert snr == pytest.approx(float(name.split("@")[1][:-2]), abs=0.5)
        assert 20 * np.log10(np.sqrt(np.mean(noisy ** 2))) == pytest.approx(tool.LEVEL_DBFS, abs=0.01)


def test_evaluate_scores_noisy_and_enhanced_by_subset(tool, tmp_path):
    def fake_dnsmos(wav, rate):  # level, rate and length in place of the three scores
        return {"dnsmos_sig": float(np.sqrt(np.mean(np.square(wav)))), "dnsmos_bak": float(rate),
                "dnsmos_ovrl": wav.size / rate}

    rows, mean = tool.evaluate(fake_data(tmp_path, tool), Enhancer(Halves()), fake_dnsmos)
    assert {s: m["files"] for s, m in mean.items()} == {
        "dfn48k recording": 1, "mixtures 0 dB": 7, "mixtures 5 dB": 7, "mixtures 10 dB": 7,
        "mixtures, held-out noise": 18, "all": 22}
    assert rows["dfn48k/noisy_snr0"]["enhanced"]["dnsmos_bak"] == 48000  # scored at its own rate
    assert mean["mixtures 0 dB"]["noisy"]["dnsmos_bak"] == 16000
    for row in rows.values():
        assert row["enhanced"]["dnsmos_ovrl"] == row["noisy"]["dnsmos_ovrl"]
        assert row["enhanced"]["dnsmos_sig"] == pytest.approx(row["noisy"]["dnsmos_sig"] / 2, rel=0.03)
    assert mean["all"]["noisy"]["dnsmos_ovrl"] == pytest.approx(np.mean([r["noisy"]["dnsmos_ovrl"]
                                                                         for r in rows.values()]))


def test_held_out_noise_is_the_recipes_and_the_cards(tool):
    card = (REPO / "pretrained/frcrn_causal_small.md").read_text()
    validation = card.split("## Validation set")[1].split("\n## ")[0]
    assert all(f"`{name.removeprefix('noise/').removesuffix('.flac')}`" in validation for name in tool.HELD_OUT)
    recipe = (REPO / "recipes/enhancement/frcrn_causal_small.yaml").read_text()
    fraction = float(re.search(r"^noise_valid_fraction:\s*([\d.]+)", recipe, re.M).group(1))
    if not (SHARED / "data" / "noise").is_dir():
        pytest.skip("needs ../shared/data/noise")
    from audiokit.tasks.data import find_audio, split_files

    held_out = split_files(find_audio([SHARED / "data" / "noise"]), fraction, "valid")
    assert [str(p.relative_to((SHARED / "data").resolve())) for p in held_out] == list(tool.HELD_OUT)


def test_errors_are_one_line(tool, tmp_path, capsys):
    assert tool.main(["--dnsmos", str(tmp_path / "none"), "--data", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "DNSMOS" in err and err.count("\n") == 1
    if DNSMOS.is_dir():
        pytest.importorskip("onnxruntime")
        assert tool.main(["--dnsmos", str(DNSMOS), "--data", str(tmp_path / "no_shared")]) == 1
        err = capsys.readouterr().err
        assert "no_shared: shared data folder not found" in err and err.count("\n") == 1


@pytest.mark.skipif(not DNSMOS.is_dir(), reason="needs ../shared/data/dnsmos")
def test_dnsmos_scores_of_an_enhancer_that_adds_noise_drop(tool):
    pytest.importorskip("onnxruntime")

    class AddsNoise(torch.nn.Module):
        sample_rate = 16000

        def enhance(self, wav):
            return wav + 0.05 * torch.randn(wav.shape, generator=torch.Generator().manual_seed(0))

    clean = speechlike(0.6, 16000)  # (repeated to one 9 s window)
    rows = tool.scores({"clean": (clean, 16000)}, Enhancer(AddsNoise()), tool.Dnsmos(DNSMOS))
    assert rows["clean"]["enhanced"]["dnsmos_bak"] < rows["clean"]["noisy"]["dnsmos_bak"] - 0.5
    assert rows["clean"]["enhanced"]["dnsmos_ovrl"] < rows["clean"]["noisy"]["dnsmos_ovrl"]
