"""The wheel carries the shipped models and recipes: built, installed into a fresh virtual environment
outside the checkout, it lists the models, enhances the sample and trains a recipe by its shipped name."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_models_and_recipes(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(REPO)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("audiokit-*.whl"))
    venv = tmp_path / "venv"  # the dependencies (torch, ...) come from this Python's site-packages
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python, audiokit = venv / "bin/python", venv / "bin/audiokit"
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True)
    work = tmp_path / "elsewhere"
    work.mkdir()

    def run(*args):
        done = subprocess.run([str(a) for a in args], cwd=work, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stdout

    package = Path(run(python, "-c", "import audiokit; print(audiokit.__file__)").strip()).parent
    assert venv in package.parents  # the wheel's copy, not the checkout
    assert "frcrn_causal_small" in run(audiokit, "models")
    run(audiokit, "enhance", package / "pretrained/samples/p232_002_noisy.flac", "-o", "out")
    assert sf.info(str(work / "out/p232_002_noisy_enhanced.wav")).frames > 0
    (work / "speech").mkdir()
    (work / "noise").mkdir()
    t = np.arange(16000) / 16000
    sf.write(work / "speech/a.wav", (0.1 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 16000)
    sf.write(work / "noise/n.wav", (0.01 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32), 16000)
    run(audiokit, "train", "frcrn_causal_small", "--output_folder", "run", "--speech_folders", "[speech]",
        "--noise_folders", "[noise]", "--rir_folders", "[]", "--number_of_epochs", "1", "--epoch_size", "2",
        "--batch_size", "2", "--valid_size", "1", "--pesq_items", "0", "--segment_seconds", "[0.5, 0.5]",
        "--num_workers", "0", "--noprogressbar", "--device", "cpu")  # relative folders: from the working directory
    assert list((work / "run/save").glob("CKPT+*"))
