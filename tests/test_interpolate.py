"""Weighted means of pretrained files (tools/interpolate_models.py, ``audiokit.hub.export.interpolate_pretrained``)."""
from __future__ import annotations

import hashlib
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
    sources = read_metadata(out)["card"]["interpolated"]
    assert [(x["file"], x["share"]) for x in sources] == [("a.safetensors", 0.75), ("b.safetensors", 0.25)]
    assert sources[0]["card"] == {"note": "random weights, for tests"} and sources[1]["card"] == {}
    assert sources[0]["sha256"] == hashlib.sha256(a.read_bytes()).hexdigest() != sources[1]["sha256"]


def test_buffers_are_averaged_and_integer_tensors_are_the_first_files(tmp_path):
    """Normalisation statistics (floating buffers) are means like the weights; counters come from the first file."""
    a, b = two_models(tmp_path)
    first, second = load_model(str(a)), load_model(str(b))
    buffers = [k for k, v in first.state_dict().items() if v.is_floating_point() and
               k not in dict(first.named_parameters())]
    counters = [k for k, v in first.state_dict().items() if not v.is_floating_point()]
    assert buffers and counters
    with torch.no_grad():
        for k in buffers:
            second.get_buffer(k).add_(1.0)
        for k in counters:
            second.get_buffer(k).fill_(7)
    b = save_pretrained(second, tmp_path / "b.safetensors", "frcrn", second.config, {})
    mixed = load_model(str(interpolate_pretrained([a, b], [1.0, 1.0], tmp_path / "mix.safetensors"))).state_dict()
    for k in buffers:
        torch.testing.assert_close(mixed[k], first.state_dict()[k] + 0.5)
    for k in counters:
        assert torch.equal(mixed[k], first.state_dict()[k])


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
    for bad in ([1.0, -1.0], [1.0, float("nan")], [float("inf"), 1.0], [0.0, 0.0]):
        with pytest.raises(AudiokitError, match="weights must be"):
            interpolate_pretrained([a, a], bad, out)
    with pytest.raises(AudiokitError, match="missing.safetensors: no such model file"):
        interpolate_pretrained([a, tmp_path / "missing.safetensors"], [1.0, 1.0], out)
    with pytest.raises(AudiokitError, match="is a folder, not a model file"):
        interpolate_pretrained([a, tmp_path], [1.0, 1.0], out)
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
    for args, message in (([str(a), "0.5", str(b)], "each pretrained file with its weight"),
                          ([str(a), "0.5", str(b), "abc"], "weight 'abc': not a number"),
                          ([str(a), "0.5", str(b), "nan"], "weight 'nan': want a finite number"),
                          ([str(a), "1", str(tmp_path / "missing.safetensors"), "1"],
                           "error: " + str(tmp_path / "missing.safetensors") + ": no such model file")):
        done = subprocess.run([sys.executable, str(TOOL), str(tmp_path / "new.safetensors"), *args],
                              capture_output=True, text=True)
        assert done.returncode != 0 and message in done.stderr and "Traceback" not in done.stderr
        assert not (tmp_path / "new.safetensors").exists()
