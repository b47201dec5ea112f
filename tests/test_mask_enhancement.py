"""MossFormer2 SE training: phase-sensitive mask loss and a one-epoch run of the 48 kHz recipe (shrunk)."""
import csv
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from audiokit.tasks.mask_enhancement import PSMLoss, phase_sensitive_mask

REPO = Path(__file__).resolve().parents[1]


def spectra(seed=0):
    g = torch.Generator().manual_seed(seed)
    clean = torch.randn(2, 65, 30, dtype=torch.complex64, generator=g)
    noise = torch.randn(2, 65, 30, dtype=torch.complex64, generator=g)
    return clean + 0.5 * noise, clean


def test_mask_target_values():
    noisy, clean = spectra()
    torch.testing.assert_close(phase_sensitive_mask(clean, clean), torch.ones(clean.shape), atol=1e-4, rtol=0)
    assert float(phase_sensitive_mask(clean, -clean).max()) == 0.0  # opposite phase: nothing to keep
    half = phase_sensitive_mask(clean, 0.5 * clean, ratio_power=1.0)
    torch.testing.assert_close(half, torch.full(clean.shape, 0.5), atol=1e-4, rtol=0)
    target = phase_sensitive_mask(noisy, clean)
    assert 0.0 <= float(target.min()) and float(target.max()) <= 1.0


def test_loss_is_smallest_at_the_target():
    noisy, clean = spectra(1)
    loss = PSMLoss()
    target = phase_sensitive_mask(noisy, clean).transpose(1, 2)
    values = [float(loss(a * target + (1 - a) * torch.ones_like(target), noisy, clean)) for a in (0.0, 0.5, 1.0)]
    assert values == sorted(values, reverse=True) and values[-1] < 1e-10


def test_recipe_trains_one_epoch(tmp_path):
    from audiokit.tasks.train import train

    for sub in ("speech", "noise"):
        (tmp_path / sub).mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    for i in range(3):
        tone = 0.1 * np.sin(2 * np.pi * (150 + 50 * i) * t)
        sf.write(tmp_path / f"speech/s{i}.wav", tone.astype(np.float32), 16000)
    sf.write(tmp_path / "noise/n.wav", (0.05 * rng.standard_normal(16000)).astype(np.float32), 16000)
    out = train(REPO / "recipes/enhancement/mossformer2_se_48k_small.yaml", [
        "--output_folder", str(tmp_path / "run"), "--number_of_epochs", "1",
        "--speech_folders", f"[{tmp_path / 'speech'}]", "--noise_folders", f"[{tmp_path / 'noise'}]",
        "--rir_folders", "[]", "--segment_seconds", "[0.5, 0.6]", "--epoch_size", "4", "--valid_size", "2",
        "--batch_size", "2", "--sample_rate", "16000", "--win_len", "512", "--win_inc", "128", "--fft_len", "512",
        "--num_mels", "20", "--channels", "16", "--num_blocks", "1", "--noprogressbar", "--device", "cpu"])
    with open(out / "learning_curve.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1"]
    assert np.isfinite(float(rows[0]["train_loss"])) and np.isfinite(float(rows[0]["valid_si_snr"]))
    weights = torch.load(sorted((out / "save").glob("CKPT+*"))[-1] / "model.ckpt")
    assert weights["mossformer.conv1_decoder.weight"].shape[0] == 257  # fft_len // 2 + 1 mask bins
