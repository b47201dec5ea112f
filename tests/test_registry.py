"""The model registry: families imported only when used, and the one table of default models per task read
by the API, the commands and the model listing."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from tiny_model import save_tiny, tiny_frcrn

import audiokit
from audiokit.audio.dc import remove_dc
from audiokit.cli.main import main
from audiokit.errors import ModelError
from audiokit.hub import registry

LAZY = """
import sys
from audiokit.hub import pretrained, registry
from audiokit.cli.main import build_parser
build_parser()  # every command registered, the default models named
pretrained.read_metadata(pretrained.available()["mossformer2_ss_8k_small"])
assert not any(name.startswith("audiokit.models") for name in sys.modules), sorted(sys.modules)
cls = registry.family_class("mossformer2_ss")
assert cls.__name__ == "MossFormer2Separator" and "audiokit.models.mossformer2" in sys.modules
assert "audiokit.models.frcrn" not in sys.modules
"""


def test_families_are_imported_only_when_built():
    done = subprocess.run([sys.executable, "-c", LAZY], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_family_names_classes_and_registration(monkeypatch):
    monkeypatch.setattr(registry, "FAMILIES", dict(registry.FAMILIES))
    assert registry.family_of(tiny_frcrn()) == "frcrn"
    with pytest.raises(ModelError, match="unknown model family 'nope'; known: dance_lstm, frcrn, .*mossformer2_se"):
        registry.family_class("nope")

    class Plugged(torch.nn.Module):
        pass

    with pytest.raises(ModelError, match="Plugged is not a known model family"):
        registry.family_of(Plugged())
    registry.register("plugged", Plugged)
    assert registry.family_class("plugged") is Plugged and registry.family_of(Plugged()) == "plugged"
    with pytest.raises(ValueError, match="'frcrn' is already"):
        registry.register("frcrn", Plugged)


def test_one_table_of_default_models(monkeypatch, tmp_path, make_wav):
    assert registry.default_model("enhance") == "frcrn_causal_small"
    assert registry.default_model("separate") == "mossformer2_ss_8k_small"
    assert registry.default_model("classify") == "lssl_speech_commands"
    assert registry.default_model("dance") == "dance_lstm"
    with pytest.raises(ModelError, match="unknown task 'sing'"):
        registry.default_model("sing")

    tiny = save_tiny(tmp_path / "tiny.safetensors", seed=3)
    monkeypatch.setitem(registry.DEFAULT_MODELS, "enhance", str(tiny))
    monkeypatch.setitem(registry.DEFAULT_MODELS, "separate", None)
    x = 0.1 * torch.randn(1, 4000)
    with torch.no_grad():
        expected = tiny_frcrn(seed=3).enhance(remove_dc(x, 16000))  # the model never sees DC
    torch.testing.assert_close(audiokit.enhance(x, 16000), expected, atol=1e-5, rtol=0)  # the API reads it
    with pytest.raises(ModelError, match="no default separate model is shipped yet"):
        audiokit.separate(x, 16000)
    source = make_wav("a.wav")
    assert main(["enhance", str(source)]) == 0  # so does the command
    with torch.no_grad():
        wav = torch.from_numpy(audiokit.audio.io.read_audio(source)[0])
        expected = tiny_frcrn(seed=3).enhance(remove_dc(wav, 16000)).numpy().clip(-1, 1)
    np.testing.assert_allclose(audiokit.audio.io.read_audio(tmp_path / "a_enhanced.wav")[0], expected, atol=1e-4)
    assert main(["separate", str(source)]) == 1


def test_models_lists_the_default_of_each_task(monkeypatch, tmp_path, capsys):
    import audiokit.hub.pretrained as pretrained

    save_tiny(tmp_path / "tiny.safetensors")
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path)
    monkeypatch.setitem(registry.DEFAULT_MODELS, "separate", "tiny")
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert next(line for line in out.splitlines() if line.startswith("tiny")).endswith("(default of separate)")
    assert "  dance     dance_lstm" in out
    monkeypatch.setitem(registry.DEFAULT_MODELS, "dance", None)
    assert main(["models"]) == 0
    assert "  dance     (none shipped yet)" in capsys.readouterr().out
    assert "model families: dance_lstm, frcrn, lssl_classifier, mossformer2_se" in out


def test_output_cut_short_by_a_closed_pipe_is_quiet():
    """``audiokit models | head -1``: the reader leaves early; no traceback, no error line."""
    import subprocess
    import sys
    proc = subprocess.run(f"{sys.executable} -m audiokit.cli.main models | head -c 10",
                          shell=True, capture_output=True, text=True)
    assert proc.stdout == "pretrained" and proc.stderr == ""
