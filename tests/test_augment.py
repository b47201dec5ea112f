"""On-the-fly mixing: SNR, level, reproducibility, reverberation, corpus handling."""
import numpy as np
import pytest
import soundfile as sf
import torch

from audiokit.tasks.augment import Mixer, coloured_noise, reverberate, rms, simulated_rir
from audiokit.tasks.data import NoisySpeechDataset, crop_collate, find_audio

RATE = 16000


def speech_like(seconds: float, rate: int, f0: float, seed: int) -> np.ndarray:
    """Harmonic tone with a syllable-rate envelope and a little noise (float32)."""
    t = np.arange(int(seconds * rate)) / rate
    voiced = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) ** 2
    noise = np.random.default_rng(seed).standard_normal(t.size) * 0.01
    return (0.1 * voiced * envelope + noise).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """speech/ (16 kHz and 8 kHz files), noise/, rir/ folders of generated audio."""
    root = tmp_path_factory.mktemp("corpus")
    for sub in ("speech/a", "speech/b", "noise", "rir"):
        (root / sub).mkdir(parents=True)
    for i in range(4):
        sf.write(root / f"speech/a/s{i}.wav", speech_like(1.5, RATE, 100 + 30 * i, i), RATE)
    sf.write(root / "speech/b/low.flac", speech_like(1.0, 8000, 180, 9), 8000)
    rng = np.random.default_rng(0)
    sf.write(root / "noise/hum.wav", (0.05 * rng.standard_normal(RATE * 2)).astype(np.float32), RATE)
    sf.write(root / "rir/room.flac", simulated_rir(0.4, RATE, rng).numpy() * 0.5, RATE)
    return root


def dataset(corpus, **mixer_args):
    return NoisySpeechDataset([corpus / "speech"], [corpus / "noise"], [corpus / "rir"],
                              sample_rate=RATE, segment_seconds=(0.5, 1.0), epoch_size=16, seed=7,
                              mixer=Mixer(**mixer_args))


def snr_db(clean, noisy):
    return float(10 * torch.log10(clean.pow(2).sum() / (noisy - clean).pow(2).sum()))


def level_dbfs(x):
    return float(20 * torch.log10(rms(x)))


def test_snr_is_achieved_for_every_noise_kind(corpus):
    ds = dataset(corpus, reverb_prob=0.0, level_dbfs=(-40.0, -30.0))
    kinds = set()
    for i in range(len(ds)):
        item = ds[i]
        kinds.add(item["noise"])
        assert abs(snr_db(item["clean"], item["noisy"]) - item["snr_db"]) < 0.5
        assert -5.0 <= item["snr_db"] <= 20.0
    assert "file" in kinds and "babble" in kinds


def test_level_in_range_and_never_clips(corpus):
    ds = dataset(corpus, level_dbfs=(-25.0, -5.0))
    clipped_cases = 0
    for i in range(len(ds)):
        noisy = ds[i]["noisy"]
        peak = float(noisy.abs().max())
        assert peak <= 0.99 + 1e-5
        assert level_dbfs(noisy) <= -5.0 + 1e-3
        if peak < 0.99 - 1e-4:  # no clipping protection: the drawn level is reached
            assert level_dbfs(noisy) >= -25.0 - 1e-3
        else:
            clipped_cases += 1
    assert clipped_cases < len(ds)


def test_items_reproducible_and_different(corpus):
    a, b = dataset(corpus), dataset(corpus)
    assert torch.equal(a[3]["noisy"], b[3]["noisy"]) and torch.equal(a[3]["clean"], b[3]["clean"])
    assert not torch.equal(a[3]["noisy"][:100], a[4]["noisy"][:100])
    first = a[3]["noisy"]
    a.set_epoch(1)
    assert not (first.shape == a[3]["noisy"].shape and torch.equal(first, a[3]["noisy"]))


def test_reverb_changes_speech_and_keeps_dry_target():
    rng = np.random.default_rng(1)
    speech = torch.from_numpy(speech_like(1.0, RATE, 120, 1))
    wet, target = Mixer(reverb_prob=1.0).reverb(speech, RATE, [], rng)
    assert wet.shape == speech.shape == target.shape
    assert snr_db(target, wet) < 15  # the late reverberation is a sizeable difference
    wet, dry = reverberate(speech, simulated_rir(0.5, RATE, rng), RATE, early_ms=0)
    assert torch.allclose(dry, speech * (rms(speech) / rms(dry)), atol=1e-5)
    assert not torch.allclose(wet, dry, atol=1e-3)


def test_coloured_noise_slopes():
    rng = np.random.default_rng(0)
    def low_to_high(x):
        power = torch.fft.rfft(x).abs().pow(2)
        n = power.numel()
        return float(power[1 : n // 10].mean() / power[n // 2 :].mean())
    ratios = [low_to_high(coloured_noise(RATE, c, rng)) for c in ("white", "pink", "brown")]
    assert ratios[0] < 2 < ratios[1] < ratios[2]
    assert abs(float(rms(coloured_noise(1000, "pink", rng))) - 1) < 1e-4


def test_corpus_resampled_and_devset_refused(corpus, tmp_path):
    ds = dataset(corpus)
    low = [f for f in ds.speech_files if f.suffix == ".flac"][0]
    assert ds.load(low).numel() == RATE  # 1 s at 8 kHz read back at 16 kHz
    (tmp_path / "noisy_dev").mkdir()
    with pytest.raises(ValueError, match="noisy_dev"):
        find_audio([tmp_path / "noisy_dev"])
    with pytest.raises(FileNotFoundError, match="missing"):
        find_audio([tmp_path / "missing"])


def test_crop_collate_batches_to_shortest(corpus):
    ds = dataset(corpus)
    batch = crop_collate([ds[0], ds[1], ds[2]])
    shortest = min(ds[i]["noisy"].numel() for i in range(3))
    assert batch["noisy"].shape == batch["clean"].shape == (3, shortest)
