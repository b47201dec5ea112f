"""tools/validate_enhancer.py: scores on validation mixtures scaled by some dB (level sensitivity)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import speechlike
from test_streaming import small_frcrn

from audiokit.api import Enhancer

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


@pytest.fixture
def tool(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "tools"))
    import validate_enhancer
    return validate_enhancer


def items(count: int = 2) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for seed in range(count):
        clean = 0.1 * speechlike(1.5, seed=seed)
        out.append({"clean": clean, "noisy": clean + 0.02 * rng.standard_normal(clean.size).astype(np.float32)})
    return out


def test_shift_scales_the_mixtures_and_a_level_normalised_model_scores_the_same(tool):
    mixtures = items()
    normalised = Enhancer(small_frcrn(level_dbfs=-22.0, level_seconds=0.5))
    lower, higher = (tool.shift_scores(normalised, mixtures, shift) for shift in (-10.0, 10.0))
    assert lower["items"] == higher["items"] == 2 and lower["shift_db"] == -10.0
    assert lower["si_snr"] == pytest.approx(higher["si_snr"], abs=1e-3)
    assert lower["stoi"] == pytest.approx(higher["stoi"], abs=1e-4)
    plain = Enhancer(small_frcrn())
    lower, higher = (tool.shift_scores(plain, mixtures, shift) for shift in (-10.0, 10.0))
    assert abs(lower["si_snr"] - higher["si_snr"]) > 0.1  # this model's output depends on the level
