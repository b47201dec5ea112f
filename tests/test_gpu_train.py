"""tools/gpu_train.py: a run's checkpoints and logs packed into $OUT (in pieces when large) and brought back into
a local run folder; the training command it runs; a bundle with an unsafe member is refused."""
from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tool(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "tools"))
    import gpu_train
    return gpu_train


def fake_run(folder: Path, checkpoints: dict[str, bytes]) -> Path:
    (folder / "save").mkdir(parents=True)
    (folder / "learning_curve.csv").write_text("epoch,lr\n1,0.001\n")
    (folder / "train_log.txt").write_text("epoch: 1\n")
    for i, (name, payload) in enumerate(checkpoints.items()):
        ckpt = folder / "save" / name
        ckpt.mkdir()
        (ckpt / "model.ckpt").write_bytes(payload)
        (ckpt / "CKPT.yaml").write_text(f"end-of-epoch: true\nindex: {i}\n")
    (folder / "save" / "CKPT+partial").mkdir()  # no CKPT.yaml: an incomplete save, never packed
    return folder


def test_pack_in_pieces_and_bring_back(tool, tmp_path, monkeypatch):
    payload = bytes(range(256)) * 4096  # 1 MiB
    run = fake_run(tmp_path / "gpu_run", {"CKPT+a": payload, "CKPT+b": payload[::-1]})
    monkeypatch.setattr(tool, "PIECE", 300_000)  # force pieces
    files = tool.pack(run, tmp_path / "out")
    assert len(files) > 1 and all(f.name.startswith("run.tar.part") for f in files)
    local = fake_run(tmp_path / "local", {"CKPT+a": b"old"})
    (local / "learning_curve.csv").write_text("epoch,lr\n")
    tool.bring_back(tmp_path / "out", local)
    assert (local / "save" / "CKPT+a" / "model.ckpt").read_bytes() == payload  # replaced by the GPU run's
    assert (local / "save" / "CKPT+b" / "model.ckpt").read_bytes() == payload[::-1]
    assert (local / "learning_curve.csv").read_text() == "epoch,lr\n1,0.001\n"
    assert not list(local.glob("tmp*"))  # the scratch folder is gone


def test_pack_leaves_out_older_checkpoints_over_the_budget(tool, tmp_path, monkeypatch):
    run = fake_run(tmp_path / "run", {"CKPT+old": b"x" * 1000, "CKPT+new": b"y" * 1000})
    os.utime(run / "save" / "CKPT+old" / "CKPT.yaml", (1, 1))
    monkeypatch.setattr(tool, "BUNDLE_BUDGET", 1500)
    [bundle] = tool.pack(run, tmp_path / "out")
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
    assert any(n.startswith("save/CKPT+new") for n in names) and not any("CKPT+old" in n for n in names)
    assert not any("partial" in n for n in names)


def test_bring_back_refuses_a_member_outside_the_run(tool, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    evil = tmp_path / "evil.txt"
    evil.write_text("x")
    with tarfile.open(out / "run.tar", "w") as tar:
        tar.add(evil, arcname="../evil.txt")
    with pytest.raises(SystemExit, match="refusing"):
        tool.bring_back(out, tmp_path / "local")
    assert not (tmp_path / "local" / "save").exists()  # nothing unpacked


def test_train_command_defaults_to_cuda_bf16_unless_given(tool):
    cmd = tool.train_command("frcrn_causal_small", "RUN", "6", ["--lr", "0.0001"])
    assert cmd[3:] == ["train", "frcrn_causal_small", "--output_folder", "RUN", "--device", "cuda", "--precision",
                       "bf16", "--max_minutes", "6", "--lr", "0.0001"]
    cmd = tool.train_command("r", "RUN", "1", ["--device", "cpu"])
    assert "cuda" not in cmd and cmd.count("--device") == 1 and "bf16" in cmd
