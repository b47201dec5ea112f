"""Input-level normalisation (audiokit.nn.level) and the FRCRN option built on it."""
import math

import pytest
import torch
from test_streaming import small_frcrn

from audiokit.nn.level import LevelGain

torch.set_num_threads(1)


def naive_levels(power: torch.Tensor, decay: float) -> torch.Tensor:
    """Bias-corrected exponentially weighted mean of ``power`` [B, N] up to each frame, by the recurrence."""
    total, weight, out = torch.zeros(power.shape[0], dtype=torch.float64), 0.0, []
    for t in range(power.shape[1]):
        total, weight = decay * total + power[:, t].double(), decay * weight + 1.0
        out.append(total / weight)
    return torch.stack(out, 1)


def test_gains_follow_the_running_level_in_blocks_steps_and_frames():
    level = LevelGain(target_dbfs=-26.0, seconds=0.05, frame_rate=100.0, max_gain_db=40.0)
    power = torch.rand(2, 700) ** 4 * 0.1  # more frames than one block of the offline update
    expected = level.gain(naive_levels(power, level.decay)).float()
    assert torch.allclose(level(power), expected, rtol=1e-6)
    state, outs, pos = None, [], 0
    for size in [0, 1, 300, 0, 57, 342]:  # empty chunks too, at the start and in between
        out, state = level.step(power[:, pos:pos + size], state)
        outs.append(out)
        pos += size
    assert torch.allclose(torch.cat(outs, 1), expected, rtol=1e-6)
    total, frames = torch.zeros(2, 1), torch.zeros(())
    for t in range(power.shape[1]):
        frames = frames + 1
        gain, total = level.frame(power[:, t:t + 1], total, frames)
        assert torch.allclose(gain[:, 0], expected[:, t], rtol=1e-4)


def test_gains_reach_the_target_and_stay_within_bounds():
    level = LevelGain(target_dbfs=-20.0, seconds=1.0, frame_rate=50.0, max_gain_db=30.0)
    rms = torch.tensor([[0.01], [1e-9], [0.0]])  # -40 dBFS, -180 dBFS, digital silence
    gains = level(rms.pow(2).expand(3, 100))
    assert gains[0, -1].item() == pytest.approx(10.0, rel=1e-5)  # +20 dB
    assert torch.allclose(gains[1:], torch.full((2, 100), 10 ** 1.5))  # the +30 dB bound
    loud = level(torch.full((1, 10), 10.0))  # +10 dBFS
    assert loud[0, 0].item() == pytest.approx(10 ** -1.5, rel=1e-5)  # -30 dB bound
    with pytest.raises(ValueError):
        LevelGain(-20.0, seconds=0.0, frame_rate=50.0)


@pytest.mark.parametrize("scale_db", [-20.0, 12.0])
def test_frcrn_with_level_normalisation_scales_its_output_with_the_input(scale_db):
    """The network sees the same normalised spectrum at any input level (within the gain bounds), so the output
    follows the input's level exactly; without the option it does not."""
    wav = torch.randn(1, 6000) * 0.05
    scale = 10 ** (scale_db / 20)
    with torch.no_grad():
        model = small_frcrn(level_dbfs=-26.0, level_seconds=0.5)
        out, scaled = model.enhance(wav), model.enhance(wav * scale) / scale
        assert (scaled - out).abs().max() <= 1e-4 * out.abs().max()
        plain = small_frcrn()
        out, scaled = plain.enhance(wav), plain.enhance(wav * scale) / scale
        assert (scaled - out).abs().max() > 1e-2 * out.abs().max()
    assert model.config["level_dbfs"] == -26.0 and "level_dbfs" not in plain.config
    assert math.isclose(model.level.decay, math.exp(-160 / (0.5 * 16000)))
