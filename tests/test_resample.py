"""Resampling (soxr): streams equal whole signals, stay aligned, hold back at most ``held`` samples, and any
ratio (16001/16000, 44101/16000) runs in bounded memory and time; rates below 1000 Hz are refused."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from audiokit.audio.resample import MIN_SAMPLE_RATE, StreamResampler, resample

ODD_RATES = [(44100, 16000), (16000, 48000), (8000, 16000), (22050, 16000), (16001, 16000), (44101, 16000),
             (16000, 44101)]


@pytest.mark.parametrize("rates", ODD_RATES)
def test_stream_equals_whole_signal_with_ceil_length(rates):
    rng = np.random.default_rng(sum(rates))
    x = torch.from_numpy(rng.standard_normal((2, 20001)).astype(np.float32))
    resampler, outs, pos = StreamResampler(*rates, channels=2), [], 0
    while pos < x.shape[-1]:
        size = int(rng.choice([1, 33, 441, 5000]))
        outs.append(resampler.feed(x[:, pos:pos + size]))
        pos += size
    outs.append(resampler.flush())
    whole = resample(x, *rates)
    assert whole.shape == (2, math.ceil(20001 * rates[1] / rates[0]))
    assert torch.equal(torch.cat(outs, dim=-1), whole)


@pytest.mark.parametrize("rates", [(44100, 16000), (44101, 16000), (16000, 48000), (16001, 16000)])
def test_a_tone_stays_in_place(rates):
    """soxr's filter delay is taken out: output sample i is the signal at time i / new_sr."""
    orig, new = rates
    y = resample(torch.sin(2 * torch.pi * 440 * torch.arange(orig, dtype=torch.float64) / orig), orig, new)
    expected = torch.sin(2 * torch.pi * 440 * torch.arange(y.shape[-1], dtype=torch.float64) / new)
    assert (y[200:-200] - expected[200:-200]).abs().max() < 1e-3


@pytest.mark.parametrize("rates", [(48000, 16000), (16000, 48000), (44101, 16000), (8000, 44100)])
def test_output_is_never_held_back_longer_than_held(rates):
    orig, new = rates
    resampler = StreamResampler(orig, new)
    produced, worst = 0, 0.0
    for fed in range(1, 20001):
        produced += resampler.feed(torch.zeros(1, 1)).shape[-1]
        worst = max(worst, fed - produced * orig / new)
    assert 0 < worst <= resampler.held


BOUNDED = """
import resource, sys, time
import numpy as np, torch
from audiokit.audio.resample import resample, StreamResampler
status = lambda key: int(next(l for l in open('/proc/self/status') if l.startswith(key)).split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (status('VmSize') + (3 << 30), resource.RLIM_INFINITY))  # fail, not swap
base, start = status('VmHWM'), time.perf_counter()
for orig in (44101, 16001):
    x = np.random.default_rng(0).standard_normal((1, 3 * orig)).astype(np.float32)
    assert resample(x, orig, 16000).shape == (1, 48000)
    stream = StreamResampler(orig, 16000)
    assert sum(stream.feed(torch.from_numpy(b)).shape[-1] for b in np.split(x, 3, axis=-1)) + \\
        stream.flush().shape[-1] == 48000
print((status('VmHWM') - base) / 2**20, time.perf_counter() - start)
"""


def test_odd_ratios_run_in_bounded_memory_and_time():
    done = subprocess.run([sys.executable, "-c", BOUNDED], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    growth_mb, seconds = map(float, done.stdout.split())
    assert growth_mb < 200 and seconds < 10, (growth_mb, seconds)


def test_rates_below_the_minimum_are_refused(tmp_path):
    import audiokit
    from audiokit.audio.io import read_audio
    from audiokit.errors import AudioError

    for rate in (MIN_SAMPLE_RATE - 1, 0, 16000.5):
        with pytest.raises(ValueError, match="want a whole number of Hz, at least 1000"):
            resample(np.zeros(10, np.float32), rate, 16000)
        with pytest.raises(ValueError, match="at least 1000"):
            StreamResampler(16000, rate)
    low = tmp_path / "low.wav"
    sf.write(low, np.zeros(800, np.float32), 800)
    with pytest.raises(AudioError, match="low.wav: sample rate 800: want a whole number of Hz, at least 1000"):
        read_audio(low)
    with pytest.raises(AudioError, match="sample rate 800"):
        audiokit.enhance_file(low, tmp_path / "out.wav", model=_tiny())
    assert not (tmp_path / "out.wav").exists()


def test_a_model_file_with_a_rate_below_the_minimum_is_refused(tmp_path):
    from audiokit.errors import CheckpointError
    from audiokit.hub.pretrained import load_model, save_pretrained

    model = _tiny()
    save_pretrained(model, tmp_path / "low.safetensors", "frcrn", {**model.config, "sample_rate": 800})
    with pytest.raises(CheckpointError, match="low.safetensors: model sample_rate 800: want a whole number"):
        load_model(str(tmp_path / "low.safetensors"))


def _tiny():
    from tiny_model import tiny_frcrn
    return tiny_frcrn()
