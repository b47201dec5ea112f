"""Weighted means of pretrained files (tools/interpolate_models.py, ``audiokit.hub.export.interpolate_pretrained``)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_model import save_tiny, tiny_frcrn

from audiokit.errors import AudiokitError
from audiokit.hub.export import interpolate_pretrained
from audiokit.hub.pretrained import load_model, read_metadata, save_pretrained

TOOL = Path(__file__).resolve().parents[1] / "tools" / "interpolate_models.py"


def two_models(tmp_path):
    a = save_tiny(tmp_path / "a.safetensors")
    other = tiny_frcrn(seed=1)
    b = save_pretrained(other, tmp_path / "b.safetensors", "frcrn", other.config, {})
    return a, b


def test_the_mean_is_weighted_per_tensor_and_the_card_names_the_sources(tmp_path):
    a, b = two_models(tmp_path)
    out = interpolate_pretrained([a, b], [3.0, 1.0], tmp_path / "mix.safetensors")
    mixed, first, second = (load_model(str(p)).state_dict() for p in (out, a, b))
    for key, value in mixed.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.75 * first[key] + 0.25 * second[key], rtol=1e-6, atol=1e-7)
    assert any(not torch.equal(mixed[k], first[k]) for k in mixed)
    card = read_metadata(out)["card"]
    assert card["interpolated"] == [{"file": "a.safetensors", "share": 0.75}, {"file": "b.safetensors", "share": 0.25}]


def test_a_whole_share_gives_that_model_back(tmp_path):
    a, b = two_models(tmp_path)
    out = interpolate_pretrained([a, b], [0.0, 2.0], tmp_path / "mix.safetensors")
    wav = torch.randn(1, 3200)
    with torch.no_grad():
        torch.testing.assert_close(load_model(str(out))(wav).wav, load_model(str(b))(wav).wav)


def test_different_models_and_bad_weights_are_refused_before_writing(tmp_path):
    a, _ = two_models(tmp_path)
    wider = tiny_frcrn(channels=6)
    c = save_pretrained(wider, tmp_path / "c.safetensors", "frcrn", wider.config, {})
    out = tmp_path / "mix.safetensors"
    with pytest.raises(AudiokitError, match="c.safetensors.*not the same model"):
        interpolate_pretrained([a, c], [1.0, 1.0], out)
    with pytest.raises(AudiokitError, match="weights must be"):
        interpolate_pretrained([a, a], [1.0, -1.0], out)
    with pytest.raises(AudiokitError, match="one weight each"):
        interpolate_pretrained([a], [1.0], out)
    assert not out.exists()


def test_the_tool_writes_the_mix(tmp_path):
    a, b = two_models(tmp_path)
    out = tmp_path / "mix.safetensors"
    done = subprocess.run([sys.executable, str(TOOL), str(out), str(a), "0.5", str(b), "0.5"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert read_metadata(out)["card"]["interpolated"][1]["share"] == 0.5
    odd = subprocess.run([sys.executable, str(TOOL), str(out), str(a), "0.5", str(b)], capture_output=True, text=True)
    assert odd.returncode != 0 and "each pretrained file with its weight" in odd.stderr
