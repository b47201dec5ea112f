"""Official MossFormer2 checkpoints load into our models and reproduce the reference numerics."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from audiokit.errors import CheckpointError, ModelError
from audiokit.hub.clearvoice import clearvoice_pipeline, load_clearvoice
from audiokit.models.mossformer2 import MossFormer2Enhancer, MossFormer2Separator

PARITY = Path(__file__).resolve().parents[1].parent / "shared" / "parity"
SS, SE = PARITY / "mossformer2_ss_16k_small", PARITY / "mossformer2_se_48k_small"
pytestmark = pytest.mark.skipif(not PARITY.is_dir(), reason="../shared/parity is absent")

NAMES = {SS: "MossFormer2_SS_16K", SE: "MossFormer2_SE_48K"}


def _args(folder):
    return json.loads((folder / "config.json").read_text())["constructor_args"]


def _load(folder, checkpoint=None):
    return load_clearvoice(NAMES[folder], checkpoint or folder / "checkpoint.pt", **_args(folder))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_separation_network_and_pipeline_match_reference():
    model = _load(SS)
    assert not model.training and isinstance(model, MossFormer2Separator)
    x = np.load(SS / "input.npy")
    with torch.no_grad():
        out = model(torch.from_numpy(x)[None])[0].numpy()
    assert np.abs(out - np.load(SS / "output.npy")).max() <= 1e-5
    piped = clearvoice_pipeline(model, x)
    assert piped.shape == (2, len(x))
    assert np.abs(piped - np.load(SS / "pipeline_output.npy")).max() <= 1e-4


def test_enhancement_features_network_and_pipeline_match_reference():
    model = _load(SE)
    assert isinstance(model, MossFormer2Enhancer)
    x = np.load(SE / "input.npy")
    ref_features = np.load(SE / "features.npy")
    features = model.features(torch.from_numpy(x)[None])
    assert np.abs(features.numpy() - ref_features).max() <= 1e-3
    with torch.no_grad():
        mask = model(torch.from_numpy(ref_features)).numpy()
    assert np.abs(mask - np.load(SE / "output.npy")).max() <= 1e-5
    piped = clearvoice_pipeline(model, x)
    assert piped.shape == x.shape
    assert np.abs(piped - np.load(SE / "pipeline_output.npy")).max() <= 2e-5


@pytest.mark.slow
@pytest.mark.parametrize("name, cls, keys", [
    ("MossFormer2_SS_16K", MossFormer2Separator, "mossformer2_ss_16k"),
    ("MossFormer2_SE_48K", MossFormer2Enhancer, "mossformer2_se_48k")])
def test_full_size_state_dict_layout(name, cls, keys):
    """Default arguments build the published topology, key for key and shape for shape."""
    lines = (PARITY / "full_size_keys" / f"{keys}.txt").read_text().splitlines()
    expected = {k: json.loads(shape) for k, shape in (line.split("\t") for line in lines)}
    ours = {k: list(v.shape) for k, v in cls().state_dict().items()}
    assert ours == expected


def _rewrite(tmp_path, folder, transform):
    state = torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]
    path = tmp_path / "ckpt.pt"
    torch.save(transform(dict(state)), path)
    return path


def _is_alias(key):
    return ".rotary_pos_emb.freqs" in key and ".layers.0." not in key


@pytest.mark.parametrize("folder", [SS, SE])
@pytest.mark.parametrize("wrapping", ["solver", "ddp", "bare_no_aliases"])
def test_official_wrappings_load(tmp_path, folder, wrapping):
    def transform(sd):
        if wrapping == "solver":
            return {"model": sd, "optimizer": {}, "epoch": 3, "step": 10}
        if wrapping == "ddp":
            return {"model": {"module." + k: v for k, v in sd.items()}}
        stripped = {k: v for k, v in sd.items() if not _is_alias(k)}
        assert len(stripped) < len(sd)
        return stripped
    model = _load(folder, _rewrite(tmp_path, folder, transform))
    reference = _load(folder)
    for (k, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("damage", ["missing", "unexpected", "shape", "alias"])
def test_bad_keys_are_errors(tmp_path, damage):
    def transform(sd):
        key = "mask_net.conv1d_out.weight"
        if damage == "missing":
            del sd[key]
        elif damage == "unexpected":
            sd["mask_net.extra.weight"] = torch.zeros(3)
        elif damage == "shape":
            sd[key] = torch.zeros(3, 64, 1)
        else:
            alias = next(k for k in sd if _is_alias(k))
            sd[alias] = sd[alias] * 2
        return sd
    match = {"shape": "wrong shapes", "alias": "disagree"}.get(damage, damage)
    with pytest.raises(CheckpointError, match=match):
        _load(SS, _rewrite(tmp_path, SS, transform))


def test_wrong_family_and_bad_arguments():
    with pytest.raises(CheckpointError, match="missing keys"):
        load_clearvoice("MossFormer2_SS_16K", SE / "checkpoint.pt", **_args(SS))
    with pytest.raises(ModelError):
        load_clearvoice("MossFormer2_SS_16K", SS / "checkpoint.pt", in_channels=64, out_channels=32)
    with pytest.raises(ModelError):
        load_clearvoice("MossFormer2_SE_48K", SE / "checkpoint.pt", no_such_argument=1)
