"""Dance generation: spectrum features, the DanceGenerator model, its task and recipe (tiny sizes)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from audiokit.audio.features import frame_log_power
from audiokit.models.dance import POSE_DIM, DanceGenerator, poses_from_positions, positions_from_poses

TINY = dict(sample_rate=8000, n_fft=64, hop_length=80, context=4, conv_channels=(4,), hidden=16,
            encoder_layers=2, fsmn_order=3, embedding_dim=8, decoder_hidden=16, decoder_layers=2, style_dim=4)


def tiny_model(encoder="lstm", **kwargs):
    torch.manual_seed(0)
    return DanceGenerator(encoder=encoder, **{**TINY, **kwargs}).eval()


def test_frame_log_power_is_causal_and_cuts_like_the_whole():
    wav = torch.randn(8000)
    whole = frame_log_power(wav, 8000, n_fft=64, hop_length=80, context=4)
    assert whole.shape == (25, 4 * 33)
    per = 320
    window = frame_log_power(wav[5 * per - 400:12 * per], 8000, n_fft=64, hop_length=80, context=4, lead=400)
    torch.testing.assert_close(window, whole[5:12])
    changed = wav.clone()
    changed[10 * per:] = torch.randn(len(wav) - 10 * per)  # the future changes: frames before 10 do not
    torch.testing.assert_close(frame_log_power(changed, 8000, n_fft=64, hop_length=80, context=4)[:10], whole[:10])
    with pytest.raises(ValueError):
        frame_log_power(wav, 16000, frame_rate=30.0)


def test_pose_representation_round_trip():
    rng = np.random.default_rng(0)
    positions = rng.normal(size=(10, 23, 3)).astype(np.float32) * 20 + [100.0, 90.0, -50.0]
    poses = poses_from_positions(positions)
    assert poses.shape == (10, POSE_DIM) and poses[0, -2:].tolist() == [0.0, 0.0]
    start = positions[0, [7, 16]].mean(0)[[0, 2]]
    np.testing.assert_allclose(positions_from_poses(poses, start), positions, atol=1e-3)


@pytest.mark.parametrize("encoder", ["lstm", "fsmn"])
def test_forward_generate_and_step_agree(encoder):
    model = tiny_model(encoder)
    spec = torch.randn(2, 9, model.feature_dim)
    poses = torch.randn(2, 9, POSE_DIM)
    style = torch.tensor([0, 3])
    pred, emb = model(spec, poses, style=style)
    assert pred.shape == (2, 8, POSE_DIM) and emb.shape == (2, 9, 8)
    # fed its own output everywhere, the training pass is the generation from the same first pose
    free, _ = model(spec, poses, torch.zeros(8, dtype=torch.bool), style=style)
    generated = model.generate(spec, poses[:, 0], style)
    torch.testing.assert_close(free, generated[:, 1:])
    torch.testing.assert_close(generated[:, 0], poses[:, 0])
    # all teacher frames through the auto-conditioning loop = plain teacher forcing; a mix differs from both
    teacher, _ = model(spec, poses, torch.ones(8, dtype=torch.bool), style=style)
    torch.testing.assert_close(teacher, pred)
    mixed, _ = model(spec, poses, torch.tensor([1, 1, 0, 0, 1, 1, 0, 0], dtype=torch.bool), style=style)
    torch.testing.assert_close(mixed[:, :2], pred[:, :2])
    assert not torch.allclose(mixed[:, 2:], pred[:, 2:]) and not torch.allclose(mixed[:, 4:], free[:, 4:])
    # streaming in chunks of 1, 3 and 5 frames, state explicit
    state = model.start(poses[:, 0], style)
    chunks = []
    for a, b in ((0, 1), (1, 4), (4, 9)):
        out, state = model.step(spec[:, a:b], state)
        chunks.append(out)
    torch.testing.assert_close(torch.cat(chunks, 1), generated)


def test_style_and_registry():
    from audiokit.hub.registry import family_class, family_of
    model = tiny_model()
    assert family_class("dance_lstm") is DanceGenerator and family_of(model) == "dance_lstm"
    spec = torch.randn(1, 5, model.feature_dim)
    waltz, anyone = model.generate(spec, style="waltz"), model.generate(spec)
    assert waltz.shape == (1, 5, POSE_DIM) and not torch.allclose(waltz[:, 1:], anyone[:, 1:])
    plain = DanceGenerator(**{**TINY, "num_styles": 0})
    assert plain.style is None and plain.generate(spec).shape == (1, 5, POSE_DIM)
    positions = model.dance(np.zeros(8000 * 2, np.float32), style=1)
    assert positions.shape == (50, 23, 3) and np.isfinite(positions).all()
