"""Sanity of the metrics on synthetic speech-like signals: identical is best, noise lowers every score."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import speechlike

from audiokit.errors import AudioError
from audiokit.metrics import (
    average_scores,
    match_estimates,
    pesq_nb,
    pesq_wb,
    pit_si_snr,
    score_folders,
    score_pair,
    sdr,
    si_snr,
    stoi,
)

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
RATE = 16000


@pytest.fixture(scope="module")
def clean():
    return speechlike(2.0, RATE)


def _noisy(x, level, seed=1):
    return x + level * np.random.default_rng(seed).standard_normal(x.size).astype(np.float32)


def test_identical_signals_score_best(clean):
    assert pesq_wb(clean, clean, RATE) > 4.5
    assert pesq_nb(clean, clean, RATE) > 4.4
    assert stoi(clean, clean, RATE) > 0.99
    assert si_snr(clean, clean) > 80 and sdr(clean, clean) > 80


def test_noise_lowers_scores_monotonically(clean):
    light, heavy = score_pair(clean, _noisy(clean, 0.01), RATE), score_pair(clean, _noisy(clean, 0.1), RATE)
    for name in ("pesq_wb", "pesq_nb", "stoi", "si_snr", "sdr"):
        assert heavy[name] < light[name], name
    assert light["pesq_wb"] < 4.5 and heavy["stoi"] < 0.95


def test_si_snr_matches_definition_and_is_scale_invariant(clean):
    est = _noisy(clean, 0.05)
    ref = clean - clean.mean()
    e = est - est.mean()
    target = (e @ ref) / (ref @ ref) * ref
    expected = 10 * np.log10((target @ target) / ((e - target) @ (e - target)))
    assert float(si_snr(clean, est)) == pytest.approx(expected, abs=1e-3)
    assert float(si_snr(clean, 3.0 * est)) == pytest.approx(expected, abs=1e-3)
    assert float(sdr(clean, 3.0 * est)) < float(sdr(clean, est))  # plain SDR counts the gain error


def test_si_snr_batches_and_tensors():
    ref = torch.randn(2, 3, 800)
    est = ref + 0.1 * torch.randn(2, 3, 800)
    batched = si_snr(ref, est)
    assert batched.shape == (2, 3)
    assert float(batched[1, 2]) == pytest.approx(float(si_snr(ref[1, 2], est[1, 2])), abs=1e-6)
    assert torch.allclose(sdr(ref, est)[0], sdr(ref[0].numpy(), est[0].numpy()))


def test_pit_si_snr_finds_the_permutation():
    refs = np.stack([speechlike(0.5, RATE, seed) for seed in range(3)])
    ests = _noisy(refs.reshape(-1), 0.02).reshape(refs.shape)[[2, 0, 1]]
    best, perm = pit_si_snr(refs, ests)
    assert perm == (1, 2, 0)
    assert best == pytest.approx(float(si_snr(refs, ests[list(perm)]).mean()), abs=1e-3)
    assert best > float(si_snr(refs, ests).mean()) + 10


def test_pesq_of_silence_is_nan(clean):
    assert np.isnan(pesq_wb(np.zeros(RATE, np.float32), np.zeros(RATE, np.float32), RATE))
    assert np.isnan(pesq_wb(clean, np.zeros_like(clean), RATE))  # a silent estimate of speech
    assert np.isnan(pesq_nb(clean, np.zeros_like(clean), RATE))


def test_stoi_of_too_little_speech_is_nan_and_quiet(clean, recwarn):
    assert 0.9 < stoi(clean, clean, RATE) <= 1.0
    for length in (5, 100, RATE // 10):          # numpy errors below a frame, pystoi's 1e-5 below 30 frames
        assert np.isnan(stoi(clean[:length], clean[:length], RATE))
    assert np.isnan(average_scores({"a": {"stoi": float("nan")}})["stoi"])
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_score_pair_trims_and_resamples_for_pesq(clean):
    at_44k = speechlike(1.0, 44100)
    scores = score_pair(at_44k, np.concatenate([at_44k, np.zeros(500, np.float32)]), 44100)
    assert scores["pesq_wb"] > 4.4 and scores["si_snr"] > 80


def test_match_estimates_by_stem():
    clean = [Path("c/a.wav"), Path("c/a_b.wav"), Path("c/x.wav")]
    ests = [Path("e/a_enhanced.wav"), Path("e/a_b_enhanced.wav"), Path("e/zzz.wav")]
    assert match_estimates(clean, ests) == {
        Path("c/a.wav"): [Path("e/a_enhanced.wav")], Path("c/a_b.wav"): [Path("e/a_b_enhanced.wav")],
        Path("c/x.wav"): []}


def test_score_folders(tmp_path, clean):
    for name, wav, rate in [("clean/u1.wav", clean, RATE), ("clean/u2.wav", clean[:RATE], RATE),
                            ("clean/u3.wav", clean, RATE), ("est/u1_enhanced.wav", _noisy(clean, 0.01), RATE),
                            ("est/u2.flac", speechlike(1.0, 8000), 8000)]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        sf.write(tmp_path / name, wav, rate)
    errors = []
    scores = score_folders(tmp_path / "clean", tmp_path / "est", on_error=errors.append)
    assert sorted(scores) == ["u1", "u2"]
    assert 1.5 < scores["u1"]["pesq_wb"] < 4.4 and scores["u1"]["si_snr"] > 20 and scores["u2"]["stoi"] > 0.9
    assert len(errors) == 1 and "u3" in str(errors[0]) and "found none" in str(errors[0])
    assert average_scores(scores)["sdr"] == pytest.approx((scores["u1"]["sdr"] + scores["u2"]["sdr"]) / 2)
    with pytest.raises(AudioError, match="u3"):
        score_folders(tmp_path / "clean", tmp_path / "est")


def test_dnsmos_reports_missing_pieces(tmp_path):
    from audiokit.errors import AudiokitError
    from audiokit.metrics.dnsmos import Dnsmos

    with pytest.raises(AudiokitError, match="DNSMOS"):
        Dnsmos(tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "data" / "dnsmos").is_dir(), reason="needs ../shared/data/dnsmos")
def test_dnsmos_scores_clean_above_noisy(clean):
    pytest.importorskip("onnxruntime")
    from audiokit.metrics.dnsmos import Dnsmos

    scorer = Dnsmos(SHARED / "data" / "dnsmos")
    good, bad = scorer(clean, RATE), scorer(_noisy(clean, 0.2), RATE)
    assert set(good) == {"dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"}
    assert bad["dnsmos_bak"] < good["dnsmos_bak"] and 1 <= bad["dnsmos_ovrl"] <= 5
