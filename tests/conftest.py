"""Shared test fixtures: small synthetic audio written on the fly (no files from ../shared)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def speechlike(seconds: float = 1.0, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A float32 [samples] speech-like test signal: a harmonic voice with a gliding pitch (110-220 Hz),
    syllable-rate (4 Hz) amplitude modulation with pauses, and a little breath noise; peak about 0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 160 + 50 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 16) if k * 220 < sample_rate / 2)
    envelope = np.clip(np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)), 0, None) ** 2
    wav = voice * envelope + 0.01 * rng.standard_normal(t.size)
    return (0.5 * wav / np.abs(wav).max()).astype(np.float32)


@pytest.fixture
def make_wav(tmp_path: Path):
    """Factory ``make_wav(name, seconds=0.5, sample_rate=16000, channels=1, subtype="PCM_16", seed=0) -> Path``
    that writes a speech-like file under ``tmp_path`` (each channel a different voice)."""

    def _make(name: str, seconds: float = 0.5, sample_rate: int = 16000, channels: int = 1,
              subtype: str = "PCM_16", seed: int = 0) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        wav = np.stack([speechlike(seconds, sample_rate, seed + c) for c in range(channels)], axis=1)
        sf.write(path, wav, sample_rate, subtype=subtype)
        return path

    return _make


@pytest.fixture(autouse=True, scope="session")
def _isolated_stream_engines(tmp_path_factory):
    """Exported frame graphs go to a fresh cache, never the user's; streams use the TorchScript
    engine unless a test asks for another (``tests/test_engines.py`` covers ONNX Runtime, whose
    first export of each model takes several seconds)."""
    import os
    saved = {k: os.environ.get(k) for k in ("AUDIOKIT_CACHE", "AUDIOKIT_STREAM_BACKEND")}
    os.environ["AUDIOKIT_CACHE"] = str(tmp_path_factory.mktemp("audiokit_cache"))
    os.environ["AUDIOKIT_STREAM_BACKEND"] = "torch"
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _signal_handlers_restored():
    """A test (or the code it runs in this process) leaves SIGINT and SIGTERM as it found them: an ignored
    SIGINT is inherited by every later subprocess, which then cannot be stopped with Ctrl-C."""
    import signal

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    after = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig, handler in before.items():
        signal.signal(sig, handler)
    assert after == before, f"signal handlers left changed: {after} (were {before})"
