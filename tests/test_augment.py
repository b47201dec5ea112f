"""On-the-fly mixing: SNR, level, reproducibility, reverberation, corpus handling."""
import numpy as np
import pytest
import soundfile as sf
import torch

from audiokit.tasks.augment import Mixer, coloured_noise, reverberate, rms, simulated_rir
from audiokit.tasks.data import NoisySpeechDataset, crop_collate, find_audio, speaker_of

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


def test_validation_holds_out_whole_speakers_and_noise_files(tmp_path):
    """split_by="speaker" never puts a speaker on both sides; noise files are held out by file."""
    for speaker in ("0cb74144", "1a2b3c4d", "5e6f7a8b", "9c0d1e2f", "aa11bb22", "cc33dd44"):
        for word in ("yes", "no"):
            (tmp_path / "speech" / word).mkdir(parents=True, exist_ok=True)
            sf.write(tmp_path / f"speech/{word}/{speaker}_nohash_0.wav", speech_like(0.3, RATE, 150, 1), RATE)
    (tmp_path / "speech/_silence_").mkdir()
    sf.write(tmp_path / "speech/_silence_/silence_1.wav", np.zeros(RATE, np.float32), RATE)
    (tmp_path / "noise").mkdir()
    for i in range(8):
        sf.write(tmp_path / f"noise/n{i}.wav", np.random.default_rng(i).standard_normal(RATE).astype(np.float32), RATE)
    sets = {split: NoisySpeechDataset([tmp_path / "speech"], [tmp_path / "noise"], sample_rate=RATE, split=split,
                                      valid_fraction=0.4, split_by="speaker", speech_exclude=["_silence_"],
                                      noise_valid_fraction=0.4)
            for split in ("train", "valid")}
    speakers = {split: {speaker_of(f) for f in ds.speech_files} for split, ds in sets.items()}
    assert speakers["train"] and speakers["valid"] and not speakers["train"] & speakers["valid"]
    assert all(len([f for f in ds.speech_files if speaker_of(f) == s]) == 2 for ds in sets.values()
               for s in {speaker_of(f) for f in ds.speech_files})  # both words of a speaker on one side
    assert not any("_silence_" in f.parts for ds in sets.values() for f in ds.speech_files)
    train_noise, valid_noise = set(sets["train"].noise_files), set(sets["valid"].noise_files)
    assert train_noise and valid_noise and not train_noise & valid_noise
    assert len(train_noise | valid_noise) == 8


def test_speech_drawn_in_proportion_to_duration(tmp_path):
    (tmp_path / "speech").mkdir()
    sf.write(tmp_path / "speech/long.wav", speech_like(3.0, RATE, 120, 1), RATE)
    for i in range(3):
        sf.write(tmp_path / f"speech/short{i}.wav", speech_like(0.5, RATE, 200, i), RATE)
    ds = NoisySpeechDataset([tmp_path / "speech"], sample_rate=RATE, weight_by_duration=True)
    assert ds.speech_weights[0] == pytest.approx(3.0 / 4.5)  # long.wav sorts first
    drawn, load = [], ds.load
    ds.load = lambda path: drawn.append(path.name) or load(path)
    rng = np.random.default_rng(0)
    for _ in range(600):
        ds._speech(800, rng)
    assert 0.58 < drawn.count("long.wav") / len(drawn) < 0.75  # uniform over files would give 0.25


def test_noise_variations_change_speed_and_colour_and_keep_the_level():
    from audiokit.tasks.augment import change_speed, random_eq
    t = np.arange(RATE) / RATE
    tone = torch.from_numpy(np.sin(2 * np.pi * 500 * t).astype(np.float32))
    faster = change_speed(torch.cat([tone, tone])[: int(RATE * 1.25)], RATE)
    assert faster.shape == (RATE,)
    peak_hz = np.argmax(np.abs(np.fft.rfft(faster.numpy())))  # 1 s: bins are Hz
    assert abs(peak_hz - 625) <= 2  # 1.25 s of a 500 Hz tone in 1 s
    white = coloured_noise(RATE, "white", np.random.default_rng(0))
    shaped = random_eq(white, 12.0, np.random.default_rng(1))
    assert abs(float(rms(shaped)) - float(rms(white))) < 1e-4
    band = lambda x, lo, hi: float(np.abs(np.fft.rfft(x.numpy()))[lo:hi].mean())  # noqa: E731
    ratios = [band(shaped, lo, lo + 500) / band(white, lo, lo + 500) for lo in (100, 2000, 6000)]
    assert max(ratios) / min(ratios) > 1.5  # the bands were coloured differently
    assert torch.allclose(random_eq(white, 0.0, np.random.default_rng(1)), white, atol=1e-5)


def test_noise_variations_off_draw_nothing_and_on_mix_two_noises(corpus):
    mixer, rng = Mixer(), np.random.default_rng(3)
    state = rng.bit_generator.state
    noise = torch.arange(100.0)
    assert torch.equal(mixer.vary_noise(lambda n: noise[:n], 50, rng), noise[:50])
    assert rng.bit_generator.state == state  # old recipes' mixtures are unchanged
    varied = Mixer(noise_speed=(0.8, 1.25), noise_eq_db=10.0).vary_noise(lambda n: noise[:n], 50, rng)
    assert varied.shape == (50,) and not torch.allclose(varied, noise[:50])
    ds = dataset(corpus, noise_mix_prob=1.0, noise_speed=(0.8, 1.25), noise_eq_db=10.0, reverb_prob=0.0)
    kinds = [ds[i]["noise"] for i in range(len(ds))]
    assert all("+" in k for k in kinds)
    item = ds[0]
    assert abs(snr_db(item["clean"], item["noisy"]) - item["snr_db"]) < 0.5


def test_audio_cache_names_a_bad_file(tmp_path):
    from audiokit.errors import AudioError
    from audiokit.tasks.data import AudioCache
    bad = tmp_path / "noise.wav"
    bad.write_bytes(b"RIFF not really audio")
    with pytest.raises(AudioError, match="noise.wav"):
        AudioCache(RATE)(bad)
    sf.write(tmp_path / "stereo.wav", np.stack([np.full(800, 0.2), np.full(800, 0.4)], 1), 8000)
    mono = AudioCache(RATE)(tmp_path / "stereo.wav")
    assert mono.shape == (1600,) and abs(float(mono[400:1200].mean()) - 0.3) < 1e-3
