"""Official FRCRN_SE_16K checkpoints load into our FRCRN and reproduce the reference numerics."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from audiokit.errors import CheckpointError, ModelError
from audiokit.hub.clearvoice import clearvoice_pipeline, load_clearvoice

PARITY = Path(__file__).resolve().parents[1].parent / "shared" / "parity" / "frcrn_se_16k_small"
pytestmark = pytest.mark.skipif(not PARITY.is_dir(), reason="../shared/parity is absent")


def _check_waveform(ours, ref):
    diff = np.abs(ours - ref)
    assert diff[640:-640].max() <= 2e-5
    edges = np.r_[0:640, len(ref) - 640:len(ref)]
    assert np.all(diff[edges] <= 1e-3 + 1e-3 * np.abs(ref[edges]))


@pytest.fixture(scope="module")
def official():
    config = json.loads((PARITY / "config.json").read_text())
    torch.set_num_threads(1)
    model = load_clearvoice("FRCRN_SE_16K", PARITY / "checkpoint.pt", **config["constructor_args"])
    return model, np.load(PARITY / "input.npy")


@pytest.mark.slow
def test_network_output_and_mask_match_reference(official):
    model, x = official
    assert not model.training
    with torch.no_grad():
        out = model(torch.from_numpy(x)[None])
    _check_waveform(out.wav[0].numpy(), np.load(PARITY / "output.npy"))
    assert np.abs(out.mask[0].numpy() - np.load(PARITY / "debug_mask.npy")).max() <= 5e-4


@pytest.mark.slow
def test_pipeline_matches_reference(official):
    model, x = official
    _check_waveform(clearvoice_pipeline(model, x), np.load(PARITY / "pipeline_output.npy"))


def _wrapped_checkpoint(tmp_path, transform):
    state = torch.load(PARITY / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]
    path = tmp_path / "ckpt.pt"
    torch.save(transform(dict(state)), path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("wrapping", ["solver", "ddp", "bare_no_aliases"])
def test_official_wrappings_load(tmp_path, wrapping):
    def transform(sd):
        if wrapping == "solver":
            return {"model": sd, "optimizer": {}, "epoch": 3, "step": 10}
        if wrapping == "ddp":
            return {"model": {"module." + k: v for k, v in sd.items()}}
        return {k: v for k, v in sd.items() if ".encoders." not in k and ".decoders." not in k
                and "fsmn_enc." not in k and "fsmn_dec." not in k and "se_layers_" not in k}
    path = _wrapped_checkpoint(tmp_path, transform)
    model = load_clearvoice("FRCRN_SE_16K", path)
    reference = load_clearvoice("FRCRN_SE_16K", PARITY / "checkpoint.pt")
    for (k, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["missing", "unexpected", "shape"])
def test_bad_keys_are_errors(tmp_path, damage):
    def transform(sd):
        key = "unet.encoder3.conv.conv_re.weight"
        if damage == "missing":
            del sd[key]
            del sd["unet.encoders.3.conv.conv_re.weight"]
        elif damage == "unexpected":
            sd["unet.extra.weight"] = torch.zeros(3)
        else:
            sd[key] = sd["unet.encoders.3.conv.conv_re.weight"] = torch.zeros(128, 128, 5, 3)
        return sd
    with pytest.raises(CheckpointError, match=damage if damage != "shape" else "wrong shapes"):
        load_clearvoice("FRCRN_SE_16K", _wrapped_checkpoint(tmp_path, transform))


def test_unknown_name_and_corrupt_file(tmp_path):
    with pytest.raises(ModelError):
        load_clearvoice("NoSuchNet", PARITY / "checkpoint.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes((PARITY / "checkpoint.pt").read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="corrupt.pt"):
        load_clearvoice("FRCRN_SE_16K", bad)
