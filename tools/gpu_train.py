"""Resume a recipe's run on a lent GPU for a few minutes and bring its checkpoints back.

On the GPU machine, from the repository root (one command):

    python3 tools/gpu_train.py RECIPE RUN_DIR MINUTES [--key value ...]

installs what is missing (quietly: from the wheels in ``.gpu/whl`` when that folder is there, since the lent
machine reaches no registry; else ``pip install -e .``), runs ``audiokit train RECIPE --output_folder RUN_DIR
--device cuda --precision bf16 --max_minutes MINUTES [--key value ...]`` (a ``--device`` or ``--precision`` among
the extra arguments replaces the default), and, when ``$OUT`` is set, packs the run's complete checkpoint folders
(the newest first, as many as fit 56 MiB) with ``learning_curve.csv``, ``train_log.txt``, ``log.txt`` and
``hyperparams.yaml`` into ``$OUT/run.tar`` (split into ``run.tar.partN`` pieces of at most 15 MiB when larger),
and prints what it packed. Its exit status is the training's.

Here, afterwards:

    python3 tools/gpu_train.py --bring-back FOLDER RUN_DIR   # FOLDER: where run.tar* came back (files_at)
    python3 tools/gpu_train.py --get-wheels [DIR]            # the wheels the GPU machine lacks (default .gpu/whl)

``--bring-back`` unpacks them into the local run folder (checkpoint folders of the same name are replaced, the
curve and logs are the GPU run's, which continue the carried ones), so ``audiokit train RECIPE --output_folder
RUN_DIR`` on the CPU resumes from the newest checkpoint. See README.md, "Training on a lent GPU".
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: import name -> distribution, for what training imports that the GPU machine's image lacks
NEEDED = {"speechbrain": "speechbrain", "hyperpyyaml": "hyperpyyaml", "ruamel.yaml": "ruamel.yaml",
          "soundfile": "soundfile", "soxr": "soxr", "pesq": "pesq", "pystoi": "pystoi"}
#: binary wheels to fetch for the GPU machine (Python 3.12, x86-64); pesq has none there and travels as source
WHEELS = ("speechbrain", "hyperpyyaml", "ruamel.yaml", "ruamel.yaml.clib", "soundfile", "cffi", "pycparser",
          "soxr", "pystoi")
SOURCES = ("pesq",)
PLATFORMS = ("manylinux_2_34_x86_64", "manylinux_2_31_x86_64", "manylinux_2_28_x86_64", "manylinux_2_27_x86_64",
             "manylinux_2_24_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")
SITE = Path(tempfile.gettempdir()) / "audiokit-gpu-site"
BUNDLE = "run.tar"
BUNDLE_BUDGET = 56 * 2**20  # what comes back from $OUT: 64 MiB in all, at most 8 files of 16 MiB
PIECE = 15 * 2**20
RUN_FILES = ("learning_curve.csv", "train_log.txt", "log.txt", "hyperparams.yaml")


def say(message: str) -> None:
    print(f"gpu_train: {message}", flush=True)


def missing_modules(env: dict) -> list[str]:
    """The modules of :data:`NEEDED` that python3 cannot import with ``env``."""
    code = ("import importlib.util as u, sys; "
            f"print(' '.join(m for m in {list(NEEDED)!r} if u.find_spec(m.split('.')[0]) is None "
            "or (m == 'ruamel.yaml' and u.find_spec(m) is None)))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return done.stdout.split()


def ensure_packages(env: dict, wheels: Path) -> None:
    """Install what :func:`missing_modules` names: from ``wheels`` into :data:`SITE` (put on ``PYTHONPATH``)
    when that folder holds any, else ``pip install -e .``. Never touches torch."""
    missing = missing_modules(env)
    if not missing:
        return
    files = sorted(wheels.glob("*.whl")) + sorted(wheels.glob("*.tar.gz")) if wheels.is_dir() else []
    if files:
        say(f"installing {', '.join(missing)} from {wheels} ({len(files)} files) into {SITE}")
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-build-isolation",
               "--no-compile", "--disable-pip-version-check", "--upgrade", "--target", str(SITE), *map(str, files)]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SITE), env.get("PYTHONPATH")]))
    else:
        say(f"installing {', '.join(missing)} with pip install -e . (no {wheels})")
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-e", str(REPO)]
    subprocess.run(cmd, check=True, cwd=REPO)
    if still := missing_modules(env):
        sys.exit(f"gpu_train: still missing after the install: {', '.join(still)}")


def train_command(recipe: str, run_dir: str, minutes: str, extra: list[str]) -> list[str]:
    given = {a.split("=", 1)[0] for a in extra if a.startswith("--")}
    defaults = [opt for name, value in (("--device", "cuda"), ("--precision", "bf16")) if name not in given
                for opt in (name, value)]
    return [sys.executable, "-m", "audiokit.cli.main", "train", recipe, "--output_folder", run_dir,
            *defaults, "--max_minutes", minutes, *extra]


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoint folders, newest first (SafeCheckpointer publishes only complete ones as CKPT+*)."""
    save = run_dir / "save"
    folders = [p for p in save.glob("CKPT+*") if p.is_dir() and (p / "CKPT.yaml").is_file()] if save.is_dir() else []
    return sorted(folders, key=lambda p: (p / "CKPT.yaml").stat().st_mtime, reverse=True)


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def pack(run_dir: Path, out: Path) -> list[Path]:
    """Write the run's newest checkpoints and logs to ``out/run.tar`` (pieces when over 15 MiB); the files."""
    members, total = [], 0
    for name in RUN_FILES:
        if (run_dir / name).is_file():
            members.append(name)
            total += (run_dir / name).stat().st_size
    checkpoints = complete_checkpoints(run_dir)
    if not checkpoints:
        say(f"no complete checkpoint in {run_dir / 'save'}: packing the logs only")
    for i, folder in enumerate(checkpoints):
        size = folder_size(folder)
        if i and total + size > BUNDLE_BUDGET:
            say(f"left out {folder.name} and older ones (over {BUNDLE_BUDGET >> 20} MiB)")
            break
        members.append(folder.relative_to(run_dir).as_posix())
        total += size
    out.mkdir(parents=True, exist_ok=True)
    bundle = out / BUNDLE
    with tarfile.open(bundle, "w") as tar:
        for name in members:
            tar.add(run_dir / name, arcname=name)
    if bundle.stat().st_size <= PIECE:
        files = [bundle]
    else:
        files = []
        with open(bundle, "rb") as whole:
            while piece := whole.read(PIECE):
                files.append(out / f"{BUNDLE}.part{len(files)}")
                files[-1].write_bytes(piece)
        bundle.unlink()
    newest = checkpoints[0].name if checkpoints else "none"
    say(f"packed {', '.join(members)} ({total / 2**20:.1f} MiB; newest checkpoint {newest}) into "
        f"{', '.join(f.name for f in files)}")
    return files


def bring_back(folder: Path, run_dir: Path) -> None:
    """Unpack ``folder/run.tar`` (or its pieces) into ``run_dir``."""
    pieces = sorted(folder.glob(f"{BUNDLE}.part*"), key=lambda p: int(p.name.rsplit("part", 1)[1]))
    sources = [folder / BUNDLE] if (folder / BUNDLE).is_file() else pieces
    if not sources:
        sys.exit(f"gpu_train: no {BUNDLE} or {BUNDLE}.partN in {folder}")
    run_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=run_dir) as scratch:
        joined = Path(scratch) / BUNDLE
        with open(joined, "wb") as whole:
            for source in sources:
                with open(source, "rb") as f:
                    shutil.copyfileobj(f, whole)
        unpacked = Path(scratch) / "unpacked"
        with tarfile.open(joined) as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if member.name.startswith("/") or ".." in parts or not (member.isfile() or member.isdir()):
                    sys.exit(f"gpu_train: refusing the bundle's member {member.name!r}")
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # members checked above too
            tar.extractall(unpacked, **safe)
        for name in RUN_FILES:
            if (unpacked / name).is_file():
                os.replace(unpacked / name, run_dir / name)
        brought = sorted((unpacked / "save").glob("CKPT+*")) if (unpacked / "save").is_dir() else []
        (run_dir / "save").mkdir(exist_ok=True)
        for folder_in in brought:
            target = run_dir / "save" / folder_in.name
            if target.exists():
                shutil.rmtree(target)
            shutil.move(str(folder_in), target)
    say(f"brought back {len(brought)} checkpoint(s) into {run_dir / 'save'}: {', '.join(p.name for p in brought)}; "
        f"audiokit train RECIPE --output_folder {run_dir} resumes from the newest")


def get_wheels(dest: Path) -> None:
    """pip download the wheels (Python 3.12, x86-64 Linux) of :data:`WHEELS` and the source of :data:`SOURCES`,
    at the versions installed here."""
    from importlib.metadata import version
    dest.mkdir(parents=True, exist_ok=True)
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    pinned = [f"{name}=={version(name)}" for name in WHEELS]
    common = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(dest)]
    subprocess.run([*common, "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                    *platforms, *pinned], check=True)
    subprocess.run([*common, "--no-binary=:all:", "--no-build-isolation",
                    *[f"{name}=={version(name)}" for name in SOURCES]], check=True)
    say(f"{dest}: {folder_size(dest) / 2**20:.1f} MiB")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--bring-back"]:
        if len(argv) != 3:
            sys.exit("usage: gpu_train.py --bring-back FOLDER RUN_DIR")
        bring_back(Path(argv[1]), Path(argv[2]))
        return 0
    if argv[:1] == ["--get-wheels"]:
        get_wheels(Path(argv[1]) if len(argv) > 1 else REPO / ".gpu/whl")
        return 0
    parser = argparse.ArgumentParser(prog="gpu_train.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe")
    parser.add_argument("run_dir")
    parser.add_argument("minutes")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="--key value pairs for audiokit train")
    args = parser.parse_args(argv)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    ensure_packages(env, Path(os.environ.get("GPU_TRAIN_WHEELS", REPO / ".gpu/whl")))
    cmd = train_command(args.recipe, args.run_dir, args.minutes, args.extra)
    say(" ".join(cmd[1:]))
    status = subprocess.run(cmd, env=env, cwd=os.getcwd()).returncode
    say(f"training exited {status}")
    if os.environ.get("OUT"):
        pack(Path(args.run_dir), Path(os.environ["OUT"]))
    return status


if __name__ == "__main__":
    sys.exit(main())
