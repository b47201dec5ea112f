"""MossFormer2 models on small random weights: shapes, rotary math, causal streaming, pipelines."""
import numpy as np
import pytest
import torch
from conftest import speechlike
from torch import nn

from audiokit.hub.clearvoice import clearvoice_pipeline
from audiokit.models.mossformer2 import MossFormer2Enhancer, MossFormer2Separator
from audiokit.models.mossformer2_blocks import MossFormerAttention, RotaryEmbedding
from audiokit.nn.state import streaming
from audiokit.streaming.runtime import process


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def test_rotary_is_a_complex_rotation_of_feature_pairs():
    rotary = RotaryEmbedding(8)
    x = torch.randn(2, 5, 12)
    out = rotary(x, offset=3)
    assert torch.equal(out[..., 8:], x[..., 8:])
    pairs = torch.view_as_complex(x[..., :8].reshape(2, 5, 4, 2).contiguous())
    angles = (torch.arange(5)[:, None] + 3) * rotary.freqs
    expected = torch.view_as_real(pairs * torch.polar(torch.ones_like(angles), angles)).flatten(-2)
    assert torch.allclose(out[..., :8], expected, atol=1e-6)
    # scores depend on relative positions only
    q, k = torch.randn(1, 1, 12), torch.randn(1, 1, 12)
    score = (rotary(q, 7) * rotary(k, 2)).sum()
    assert torch.allclose(score, (rotary(q, 25) * rotary(k, 20)).sum(), atol=1e-5)
    assert not torch.allclose(score, (rotary(q, 25) * rotary(k, 21)).sum(), atol=1e-3)


def test_causal_attention_steps_equal_offline_across_groups():
    block = MossFormerAttention(16, group_size=4, query_key_dim=8, rotary=RotaryEmbedding(4),
                                causal=True).eval()
    x = torch.randn(2, 23, 16)
    with torch.no_grad():
        offline = block(x)
        state, outs = None, []
        for size in (1, 2, 5, 3, 4, 8):
            start = sum(o.shape[1] for o in outs)
            y, state = block.step(x[:, start:start + size], state)
            outs.append(y)
        # changing the future leaves the past alone
        later = x.clone()
        later[:, 10:] += 1
        changed = block(later)
    assert torch.allclose(torch.cat(outs, 1), offline, atol=1e-5)
    assert torch.equal(changed[:, :10], offline[:, :10])
    assert not torch.allclose(changed[:, 10:], offline[:, 10:])


def test_non_causal_attention_reads_the_future_and_cannot_step():
    block = MossFormerAttention(16, group_size=4, query_key_dim=8, rotary=RotaryEmbedding(4)).eval()
    x = torch.randn(1, 10, 16)
    later = x.clone()
    later[:, 9] += 1
    with torch.no_grad():
        assert block(x).shape == x.shape
        assert not torch.allclose(block(later)[:, 0], block(x)[:, 0])
    with pytest.raises(RuntimeError, match="causal=True"):
        block.step(x, None)


def _small_separator(**kwargs):
    return MossFormer2Separator(32, 32, num_blocks=1, **kwargs).eval()


def test_separator_shapes_batch_and_config():
    model = _small_separator(num_spks=3)
    wav = torch.from_numpy(np.stack([speechlike(0.1, seed=s) for s in range(2)]))[:, :1597]
    with torch.no_grad():
        out = model.separate(wav)
        single = model(wav[1:])
    assert out.shape == (2, 3, 1597)
    assert torch.allclose(out[1:], single, atol=1e-6)
    assert (model.sample_rate, model.causal, model.hop_length) == (16000, False, 8)
    assert MossFormer2Separator(**model.config).config == model.config
    with pytest.raises(ValueError, match="in_channels == out_channels"):
        MossFormer2Separator(32, 16)


def test_separator_dropout_rate_is_set_everywhere_and_only_acts_in_training():
    wav = torch.from_numpy(speechlike(0.1, seed=3))[None, :1200]
    torch.manual_seed(0)
    plain = _small_separator(dropout=0.0).train()
    torch.manual_seed(0)
    published = _small_separator().train()
    assert {m.p for m in published.modules() if isinstance(m, nn.Dropout)} == {0.1}
    assert {m.p for m in plain.modules() if isinstance(m, nn.Dropout)} == {0.0}
    assert plain.config["dropout"] == 0.0
    assert torch.equal(plain(wav), plain(wav))              # no dropout: training steps are repeatable
    assert not torch.equal(published(wav), published(wav))
    with torch.no_grad():                                     # same weights, same inference output
        assert torch.equal(plain.eval()(wav), published.eval()(wav))
    with pytest.raises(ValueError, match="dropout rate"):
        _small_separator(dropout=1.0)


def test_deepen_keeps_the_trained_output_and_refuses_other_shapes():
    from audiokit.models.mossformer2 import deepen

    trained = _small_separator()
    deeper = MossFormer2Separator(32, 32, num_blocks=3).eval()
    assert deepen(deeper, trained.state_dict()) == 2
    wav = torch.from_numpy(speechlike(0.1, seed=4))[None, :1600]
    with torch.no_grad():
        assert torch.equal(deeper(wav), trained(wav))
    with pytest.raises(ValueError, match="does not match"):
        deepen(_small_separator(), deeper.state_dict())          # fewer blocks than the trained one
    with pytest.raises(ValueError, match="does not match"):
        deepen(MossFormer2Separator(16, 16, num_blocks=2), trained.state_dict())


@pytest.mark.parametrize("causal", [False, True])
def test_widen_keeps_the_trained_output_and_lets_the_copies_part(causal):
    from audiokit.nn.widen import widen_state_dict

    trained = _small_separator(causal=causal)
    with torch.no_grad():  # trained-looking norms and offsets, not their initial ones and zeros
        for name, weight in trained.named_parameters():
            weight.add_(0.05 * torch.randn_like(weight))
    wav = torch.from_numpy(speechlike(0.1, seed=5))[None, :1600]
    with torch.no_grad():
        expected = trained(wav)
    hidden = "mask_net.mdl.intra_mdl.mossformerM.layers.0.to_hidden.mdl.1.weight"  # [4D, D]
    for factor in (2, 3):
        wide = MossFormer2Separator(32 * factor, 32 * factor, num_blocks=1, causal=causal).eval()
        exact = widen_state_dict(wide, trained.state_dict())
        wide.load_state_dict(exact)
        with torch.no_grad():
            torch.testing.assert_close(wide(wav), expected, atol=1e-5, rtol=1e-4)
        # every input column is split evenly over its copies; each output row is repeated
        torch.testing.assert_close(exact[hidden][::factor, ::factor] * factor, trained.state_dict()[hidden])
        assert torch.equal(exact[hidden][0], exact[hidden][1])

    def error(noise):
        wide.load_state_dict(widen_state_dict(wide, trained.state_dict(), noise=noise, seed=1))
        with torch.no_grad():
            return float((wide(wav) - expected).pow(2).sum() / expected.pow(2).sum())

    # the antithetic noise cancels to first order: the error power falls faster than the
    # noise power (plain noise: about 4x per halving, 0.03 at 0.1)
    assert 0 < error(0.1) < 3e-3 and error(0.1) > 6 * error(0.05)
    noisy = widen_state_dict(wide, trained.state_dict(), noise=0.1, seed=1)
    rows = noisy[hidden].unflatten(0, (-1, 3))
    assert not torch.equal(rows[:, 0], rows[:, 1])
    torch.testing.assert_close(rows.mean(1), exact[hidden][::3], atol=1e-6, rtol=0)


def test_widen_refuses_what_does_not_grow_by_a_whole_factor():
    from audiokit.nn.widen import widen_state_dict

    trained = _small_separator().state_dict()
    with pytest.raises(ValueError, match="does not widen"):
        widen_state_dict(MossFormer2Separator(48, 48, num_blocks=1), trained)
    with pytest.raises(ValueError, match="differ in keys"):
        widen_state_dict(MossFormer2Separator(64, 64, num_blocks=2), trained)


@pytest.mark.slow
def test_causal_separator_streams_exactly_its_offline_output():
    model = _small_separator(num_spks=2, causal=True)
    assert (model.latency_samples, model.stream_lead, model.hop_length) == (16, 8, 8)
    # 600 frames: crosses two attention groups of 256 frames
    wav = torch.from_numpy(np.stack([speechlike(0.3, seed=s) for s in range(2)]))[:, :4803]
    with torch.no_grad():
        offline = model.separate(wav)
    for chunk in (1000, 77):
        streamed = process(model, wav, chunk)
        assert streamed.shape == offline.shape
        assert torch.allclose(streamed, offline, atol=1e-6), chunk
    later = wav.clone()
    later[:, 3000:] += 0.3
    with torch.no_grad():
        changed = model.separate(later)
    reach = 3000 - model.latency_samples
    assert torch.equal(changed[..., :reach], offline[..., :reach])
    with pytest.raises(RuntimeError, match="non-causal"), streaming(_small_separator()) as m:
        m(wav[:, :80])


class _UnitMask(nn.Module):
    """Stands in for the mask net: all-ones masks ``[B, S, F, N]`` for input ``[B, C, N]``."""

    def forward(self, x):
        return torch.ones(x.shape[0], 2, 961, x.shape[-1])


def test_enhancer_features_and_stft_path():
    model = MossFormer2Enhancer(out_channels=16, num_blocks=1).eval()
    wav = torch.from_numpy(speechlike(0.2, 48000))[None]
    features = model.features(wav)
    assert features.shape == (1, 1 + (9600 - 1920) // 384, 180)
    assert torch.equal(features, model.features(wav))
    assert not torch.equal(features, model.features(wav, dither=1.0))
    with torch.no_grad():
        assert model(features).shape == (1, features.shape[1], 961)
        assert model.enhance(wav[:, :1000]).shape == (1, 1000)
        model.mossformer = _UnitMask()
        identity = model.enhance(wav)
    # a unit mask reconstructs every sample covered by a full frame
    covered = (features.shape[1] - 1) * 384 + 1920
    assert torch.allclose(identity[:, :covered], wav[:, :covered], atol=1e-5)
    assert torch.all(identity[:, covered:] == 0)


def test_segmented_separation_pipeline_keeps_window_centres_and_input_rms():
    model = _small_separator()
    wav = speechlike(0.5)
    out = clearvoice_pipeline(model, wav, one_time_decode_length=0.1, decode_window=0.1)
    assert out.shape == (2, len(wav))
    window, stride, give_up = 1600, 1200, 200
    with torch.no_grad():
        second = model(torch.from_numpy(wav[None, stride:stride + window]))[0].numpy()
    centre = out[:, stride + give_up:stride + window - give_up]
    ratio = centre / second[:, give_up:window - give_up]
    assert np.allclose(ratio, ratio[:, :1], rtol=1e-3)
    # one pass on the clip zero-padded to the 2 s window; RMS measured before trimming
    whole = clearvoice_pipeline(model, wav)
    with torch.no_grad():
        raw = model(torch.nn.functional.pad(torch.from_numpy(wav), (0, 32000 - len(wav)))[None])[0].numpy()
    scale = np.sqrt((wav ** 2).mean()) / np.sqrt((raw ** 2).mean(1, keepdims=True))
    assert np.allclose(whole, raw[:, :len(wav)] * scale, atol=1e-6)


def test_segmented_enhancement_pipeline_keeps_window_centres():
    model = MossFormer2Enhancer(out_channels=16, num_blocks=1).eval()
    wav = speechlike(0.5, 48000)
    out = clearvoice_pipeline(model, wav, one_time_decode_length=0.2, decode_window=0.2)
    window, stride, give_up = 9600, 7200, 1200
    with torch.no_grad():
        second = model.enhance(torch.from_numpy(wav[None, stride:stride + window]))[0].numpy()
    assert out.shape == wav.shape
    assert np.allclose(out[stride + give_up:stride + window - give_up],
                       second[give_up:window - give_up], atol=1e-6)
