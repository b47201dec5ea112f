"""Errors of the operating system keep their cause (issue 18): "permission denied", "read-only file system",
"no space left on device", never libsndfile's bare "System error"; an unreadable subfolder is reported.

Permissions mean nothing to root, so as root those checks run in a forked child that has become ``nobody``.
Read-only and full file systems are real ones: tmpfs mounts in a private mount namespace (``unshare -m``),
which needs the privilege to mount; without it those checks are skipped.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiokit.audio.io import find_audio_files, read_audio, write_audio
from audiokit.blocks import OutputFiles
from audiokit.errors import AudioError

REPO = Path(__file__).resolve().parents[1]
NOBODY = 65534


def as_unprivileged(check):
    """``check()`` (returning JSON-able data) run without root's power over permissions: in a child process
    that has become ``nobody`` when this is root, else here."""
    if os.geteuid() != 0:
        return check()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no torch work here (its thread pools do not survive a fork)
        status = 1
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            with os.fdopen(write, "w") as out:
                json.dump(check(), out)
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read) as answer:
        text = answer.read()
    _, status = os.waitpid(pid, 0)
    assert status == 0 and text, "the unprivileged check failed"
    return json.loads(text)


def _problem(call) -> str:
    try:
        call()
    except AudioError as exc:
        return str(exc)
    return "no error"


@pytest.fixture
def shared_tmp():
    """A folder everyone may enter (pytest's own is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="audiokit-perm-"))
    folder.chmod(0o755)
    yield folder
    for path in folder.rglob("*"):
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    shutil.rmtree(folder)


def test_permission_denied_is_said_for_files_folders_and_outputs(shared_tmp):
    wav = 0.1 * np.ones(1600, np.float32)
    (shared_tmp / "in" / "secret").mkdir(parents=True)
    sf.write(shared_tmp / "in" / "ok.wav", wav, 16000)
    sf.write(shared_tmp / "in" / "secret" / "hidden.wav", wav, 16000)
    sf.write(shared_tmp / "in" / "locked.wav", wav, 16000)
    (shared_tmp / "in" / "locked.wav").chmod(0o000)
    (shared_tmp / "in" / "secret").chmod(0o000)
    (shared_tmp / "out").mkdir(mode=0o555)
    (shared_tmp / "out").chmod(0o555)
    for path in (shared_tmp / "in", shared_tmp / "in" / "ok.wav"):
        path.chmod(0o755 if path.is_dir() else 0o644)

    def check():
        reported = []
        found = find_audio_files([shared_tmp / "in"], on_missing=lambda e: reported.append(str(e)))
        return {"found": [p.name for p in found], "reported": reported,
                "read": _problem(lambda: read_audio(shared_tmp / "in" / "locked.wav")),
                "write": _problem(lambda: write_audio(shared_tmp / "out" / "a.wav", wav, 16000)),
                "stream": _problem(lambda: OutputFiles([shared_tmp / "out" / "b.wav"], 16000, 1)),
                "left": os.listdir(shared_tmp / "out")}

    result = as_unprivileged(check)
    secret = shared_tmp / "in" / "secret"
    assert result["reported"] == [f"{secret}: folder cannot be read (permission denied); its files are not processed"]
    assert result["found"] == ["locked.wav", "ok.wav"]  # (locked: found, and refused when read)
    assert result["read"] == f"{shared_tmp / 'in' / 'locked.wav'}: cannot be read (permission denied)"
    assert result["write"] == f"{shared_tmp / 'out' / 'a.wav'}: cannot be written (permission denied)"
    assert result["stream"] == f"{shared_tmp / 'out' / 'b.wav'}: cannot be written (permission denied)"
    assert result["left"] == []


SCRIPT = """
import json, os, sys, numpy as np, soundfile as sf
sys.path.insert(0, {tests!r})
from audiokit.audio.io import write_audio
from audiokit.cli.main import main
from test_train import RECIPE, overrides
ro, full, data = sys.argv[1:4]
sf.write(os.path.join(data, "in.wav"), 0.1 * np.ones(64000, np.float32), 16000)
result = {{}}
for name, folder in (("ro", ro), ("full", full)):
    try:
        write_audio(os.path.join(folder, "w.wav"), np.zeros(64000, np.float32), 16000)
    except Exception as exc:
        result[name + "_write_audio"] = str(exc)
print(json.dumps(result), flush=True)
sys.stdout.flush()
for folder in (ro, full):  # --checkpoint-free tiny "model": the identity of the batch machinery
    main(["enhance", os.path.join(data, "in.wav"), "--model", {model!r}, "-o", folder])
main(["train", str(RECIPE)] + overrides(__import__("pathlib").Path(data), __import__("pathlib").Path(ro) / "run"))
print(json.dumps(sorted(os.listdir(full))))
"""


def _can_mount() -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _can_mount(), reason="needs the privilege to mount tmpfs in a private mount namespace")
def test_read_only_and_full_file_systems_are_said(tmp_path):
    from tiny_model import save_tiny

    ro, full, data = tmp_path / "ro", tmp_path / "full", tmp_path / "data"
    for folder in (ro, full, data):
        folder.mkdir()
    for sub in ("speech", "noise", "rir"):  # what test_train's overrides name
        (data / sub).mkdir()
        sf.write(data / sub / "x.wav", 0.1 * np.sin(np.arange(16000) / 5).astype(np.float32), 16000)
    model = save_tiny(tmp_path / "tiny.safetensors")
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.format(tests=str(REPO / "tests"), model=str(model)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    command = (f"mount -t tmpfs -o ro tmpfs {ro} && mount -t tmpfs -o size=64k tmpfs {full} && "
               f"exec {sys.executable} {script} {ro} {full} {data}")
    done = subprocess.run(["unshare", "-m", "sh", "-c", command], capture_output=True, text=True, env=env,
                          timeout=300)
    lines = done.stdout.splitlines()
    assert json.loads(lines[0]) == {"ro_write_audio": f"{ro / 'w.wav'}: cannot be written (read-only file system)",
                                    "full_write_audio": f"{full / 'w.wav'}: cannot be written (no space left on "
                                                        "device)"}
    errors = [line for line in done.stderr.splitlines() if "error: " in line]
    assert errors == [f"error: {ro / 'in_enhanced.wav'}: cannot be written (read-only file system)",
                      f"error: {full / 'in_enhanced.wav'}: cannot be written (no space left on device)",
                      f"audiokit train: error: {ro / 'run'}: cannot be made or written (read-only file system); "
                      "see --output_folder"], done.stderr[-3000:]
    assert json.loads(lines[-1]) == []  # nothing half-written left on the full disk
    assert "Traceback" not in done.stderr
