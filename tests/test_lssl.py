"""The Linear State-Space Layer, its HiPPO matrices and the streaming LSSL classifier."""
from __future__ import annotations

import math

import pytest
import torch
import torchaudio

from audiokit.audio.features import CausalLogMel
from audiokit.models.lssl_classifier import LSSLClassifier
from audiokit.nn.gated import GatedLinearUnit
from audiokit.nn.hippo import hippo_matrices
from audiokit.nn.lssl import DT_LIMITS, LSSL, discretize, ssm_kernel
from audiokit.nn.pooling import CausalAvgPool, RunningMean
from audiokit.nn.state import streaming

torch.set_num_threads(1)
SMALL = {"channels": 16, "state_size": 16, "num_layers": 3, "dropout": 0.0}
#: the classifier's front ends: the raw waveform, log-mel frames, log-mel frames through a conv stem
FRONTENDS = {"raw": {"frontend": "raw"}, "logmel": {"frontend": "logmel"},
             "logmel_stem": {"frontend": "logmel", "stem_channels": [4, 8]}}


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference relative to the largest magnitude of ``b``."""
    return float((a - b).abs().max() / b.abs().max())


def stream_chunks(step, x: torch.Tensor, chunk: int, dim: int = 1):
    """Outputs of ``step(chunk, state)`` over ``x`` cut in chunks of ``chunk`` along ``dim``, concatenated."""
    state, outputs = None, []
    for piece in x.split(chunk, dim=dim):
        out, state = step(piece, state)
        outputs.append(out)
    return torch.cat(outputs, dim=1), state


def test_legs_matrices_match_the_closed_form_for_n3():
    a, b = hippo_matrices("legs", 3)
    r3, r5, r15 = math.sqrt(3), math.sqrt(5), math.sqrt(15)
    expected = -torch.tensor([[1, 0, 0], [r3, 2, 0], [r5, r15, 3]], dtype=torch.float64)
    assert torch.allclose(a, expected) and torch.allclose(b, torch.tensor([1, r3, r5], dtype=torch.float64))


def test_legt_matrices_match_the_closed_form_for_n3():
    a, b = hippo_matrices("legt", 3)
    r3, r5, r15 = math.sqrt(3), math.sqrt(5), math.sqrt(15)
    expected = -torch.tensor([[1, r3, r5], [-r3, 3, r15], [r5, -r15, 5]], dtype=torch.float64)
    assert torch.allclose(a, expected) and torch.allclose(b, torch.tensor([1, -r3, r5], dtype=torch.float64))


@pytest.mark.parametrize("measure", ["legs", "legt"])
def test_constant_input_settles_on_the_first_coefficient(measure):
    a, b = hippo_matrices(measure, 16)
    assert torch.allclose(a[:, 0], -b)  # x = e_0 is the fixed point of x' = A x + B
    assert torch.linalg.eigvals(a).real.max() < 0


def test_legt_remembers_a_window_of_one_time_unit():
    a, b = hippo_matrices("legt", 32)
    eye = torch.eye(32, dtype=torch.float64)

    def after(t: float) -> torch.Tensor:  # x(t) from x(0) = 0 with u = 1
        return torch.linalg.solve(a, (torch.linalg.matrix_exp(t * a) - eye) @ b)

    assert (after(2.0) - eye[0]).abs().max() < 1e-5  # the window holds only ones: e_0
    assert (after(0.5) - eye[0]).abs().max() > 0.1  # half the window still zeros


def test_unknown_measure_is_refused():
    with pytest.raises(ValueError, match="measure"):
        hippo_matrices("fourier", 4)


def test_bilinear_discretisation_formula():
    a, b = hippo_matrices("legs", 8)
    dt = torch.tensor([0.1, 0.02], dtype=torch.float64)
    d_a, d_b = discretize(a, b, dt)
    for h in range(2):
        left = torch.eye(8, dtype=torch.float64) - dt[h] / 2 * a
        assert torch.allclose(left @ d_a[h], torch.eye(8, dtype=torch.float64) + dt[h] / 2 * a)
        assert torch.allclose(left @ d_b[h], dt[h] * b)


@pytest.mark.parametrize("length", [1, 2, 5, 300])
def test_kernel_equals_explicit_matrix_powers(length):
    torch.manual_seed(0)
    layer = LSSL(3, 64, dt_min=1e-3, dt_max=0.5)
    with torch.no_grad():
        d_a, d_b = layer.discrete_system()
        c = layer.C.double()
        fast = ssm_kernel(d_a, d_b, c, length)
    columns, v = [], d_b
    for _ in range(length):
        columns.append((c * v).sum(-1))
        v = (d_a @ v[..., None])[..., 0]
    assert fast.shape == (3, length)
    assert relative_error(fast, torch.stack(columns, -1)) < 1e-10


@pytest.mark.parametrize("length", [1, 100, 4096])
@pytest.mark.parametrize("chunk", [1, 7, 160, None])
def test_step_mode_equals_convolution_mode(length, chunk):
    torch.manual_seed(length)
    layer = LSSL(4, 64, dt_min=1e-3, dt_max=1e-1)
    x = torch.randn(2, length, 4)
    with torch.no_grad():
        offline = layer(x)
        streamed, state = stream_chunks(layer.step, x, chunk or length)
    assert streamed.shape == offline.shape and state["state"].shape == (2, 4, 64)
    assert relative_error(streamed, offline) < 1e-4


@pytest.mark.parametrize("measure", ["legs", "legt"])
def test_long_sequences_agree_and_match_a_float64_recurrence(measure):
    torch.manual_seed(1)
    layer = LSSL(2, 64, measure, dt_min=1e-4, dt_max=1e-2)
    x = torch.randn(1, 65536, 2)
    with torch.no_grad():
        offline = layer(x)
        streamed, _ = stream_chunks(layer.step, x, 160)
        d_a, d_b = layer.discrete_system()
        s, reference = torch.zeros(2, 64, dtype=torch.float64), []
        for k in range(2000):  # the first samples, by the recurrence itself
            s = (d_a @ s[..., None])[..., 0] + d_b * x[0, k, :, None].double()
            reference.append((layer.C.double() * s).sum(-1) + layer.D.double() * x[0, k].double())
    assert torch.isfinite(offline).all()
    assert relative_error(streamed, offline) < 1e-4
    assert relative_error(offline[0, :2000].double(), torch.stack(reference)) < 1e-4


def test_the_state_carries_between_calls_under_the_streaming_context():
    layer = LSSL(3, 16)
    x = torch.randn(1, 50, 3)
    with torch.no_grad():
        offline = layer(x)
        with streaming(layer):
            streamed = torch.cat([layer(x[:, :20]), layer(x[:, 20:])], 1)
    assert relative_error(streamed, offline) < 1e-5


@pytest.mark.parametrize("log_dt", [1e6, -1e6, float("inf")])
def test_step_size_is_clamped_so_the_output_stays_finite(log_dt):
    layer = LSSL(3, 64)
    with torch.no_grad():
        layer.log_dt.fill_(log_dt)
        x = torch.randn(1, 500, 3)
        offline, (streamed, _) = layer(x), layer.step(x, None)
    dt = layer.step_sizes()
    assert ((dt >= DT_LIMITS[0] * (1 - 1e-9)) & (dt <= DT_LIMITS[1] * (1 + 1e-9))).all()
    assert torch.isfinite(offline).all() and torch.isfinite(streamed).all()
    assert relative_error(streamed, offline) < 1e-4


def test_rate_change_scales_the_step_size():
    layer = LSSL(5, 16, dt_min=1e-3, dt_max=1e-2)
    trained = layer.step_sizes()
    layer.set_rate(0.5)  # a 16 kHz model run at 8 kHz
    assert torch.allclose(layer.step_sizes(), 2 * trained)
    layer.set_rate(2.0)
    assert torch.allclose(layer.step_sizes(), trained / 2)
    with pytest.raises(ValueError):
        layer.set_rate(0)


def test_at_half_the_rate_a_smooth_signal_gives_the_same_output_at_the_same_times():
    torch.manual_seed(0)
    layer = LSSL(4, 16, dt_min=1e-3, dt_max=1e-2)
    times = torch.arange(16000) / 16000

    def signal(t: torch.Tensor) -> torch.Tensor:
        wave = torch.sin(2 * math.pi * 30 * t) + 0.5 * torch.sin(2 * math.pi * 75 * t + 1)
        return wave[None, :, None].expand(1, -1, 4)

    with torch.no_grad():
        full = layer(signal(times))[:, ::2]
        unscaled = layer(signal(times[::2]))
        layer.set_rate(0.5)
        rescaled = layer(signal(times[::2]))
    assert relative_error(rescaled, full) < 0.02
    assert relative_error(unscaled, full) > 0.2


def test_gradients_reach_step_size_c_d_and_a():
    torch.manual_seed(0)
    layer = LSSL(4, 16, trainable_A=True)
    x = torch.randn(2, 64, 4)
    layer(x).square().mean().backward()
    for name in ("log_dt", "C", "D", "A", "B"):
        grad = getattr(layer, name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_fixed_a_is_a_buffer():
    layer = LSSL(4, 16)
    names = {name for name, _ in layer.named_parameters()}
    assert names == {"C", "D", "log_dt"} and "A" in dict(layer.named_buffers())


def test_gated_linear_unit_is_values_times_sigmoid_gates():
    unit = GatedLinearUnit(6, 4)
    x = torch.randn(2, 5, 6)
    values, gates = unit.linear(x).chunk(2, dim=-1)
    assert torch.allclose(unit(x), values * torch.sigmoid(gates), atol=1e-6)


def test_causal_pools_stream_like_offline():
    x = torch.randn(2, 23, 3)
    for module in (CausalAvgPool(4), RunningMean()):
        offline = module(x)
        for chunk in (1, 3, 23):
            streamed, _ = stream_chunks(module.step, x, chunk)
            assert torch.allclose(streamed, offline, atol=1e-6), (module, chunk)
    assert torch.allclose(CausalAvgPool(4)(x)[:, 1], x[:, 4:8].mean(1))
    assert torch.allclose(RunningMean()(x)[:, 9], x[:, :10].mean(1), atol=1e-6)


def test_causal_log_mel_streams_like_offline_and_keeps_its_frame_rate():
    frontend = CausalLogMel(16000, n_mels=20)
    wav = torch.randn(2, 1234)
    offline = frontend(wav)
    assert offline.shape == (2, 1234 // 160, 20)
    streamed, _ = stream_chunks(frontend.step, wav, 37, dim=-1)
    assert relative_error(streamed, offline) < 1e-5
    frontend.set_rate(8000)
    assert frontend(torch.randn(1, 800)).shape == (1, 10, 20)
    with pytest.raises(ValueError, match="whole"):
        frontend.set_rate(11025)


def test_causal_log_mel_gives_the_same_band_powers_at_a_lower_rate():
    """A band-limited sound read at 8 kHz gives the log-mel powers it gives at 16 kHz in the bands
    below 4 kHz (no level offset from the shorter window), and the built rate is unchanged."""
    torch.manual_seed(0)
    wav16 = torchaudio.functional.resample(
        torchaudio.functional.resample(torch.randn(1, 16000), 16000, 8000), 8000, 16000)
    wav8 = torchaudio.functional.resample(wav16, 16000, 8000)
    frontend = CausalLogMel(16000, n_mels=40)
    at16 = frontend(wav16)
    frontend.set_rate(8000)
    at8 = frontend(wav8)
    low = frontend.mel_bands.sum(0) > 0  # bands with bins below 4 kHz
    low[-12:] = False  # and clear of the resampler's transition band
    offset = (at8 - at16)[:, 5:, low].mean()
    assert abs(float(offset)) < 0.1, offset
    frontend.set_rate(16000)
    assert torch.equal(frontend(wav16), at16)


def test_default_classifier_has_at_most_one_million_parameters():
    model = LSSLClassifier()
    count = sum(p.numel() for p in model.parameters())
    assert 100_000 < count <= 1_000_000
    assert model.num_classes == 12 and model.sample_rate == 16000 and model.frame_samples == 16


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_streamed_posteriors_equal_offline_frame_logits(frontend):
    torch.manual_seed(0)
    model = LSSLClassifier(**FRONTENDS[frontend], **SMALL).eval()
    wav = 0.1 * torch.randn(2, 4000)
    with torch.no_grad():
        offline = model.frame_logits(wav)
        assert offline.shape == (2, 4000 // model.frame_samples, 12)
        assert torch.allclose(model(wav), offline[:, -1])
        chunks = [1, 7, 160, 500, 13, 3319]
        streamed = []
        with streaming(model):
            for piece in wav.split(chunks, dim=-1):
                streamed.append(model(piece))
        streamed = torch.cat(streamed, 1)
        explicit, _ = stream_chunks(model.step, wav, 160, dim=-1)
    assert streamed.shape == offline.shape and relative_error(streamed, offline) < 1e-4
    assert relative_error(explicit, offline) < 1e-4


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_future_samples_do_not_change_earlier_frames(frontend):
    torch.manual_seed(0)
    model = LSSLClassifier(**FRONTENDS[frontend], **SMALL).eval()
    wav = 0.1 * torch.randn(1, 3200)
    changed = wav.clone()
    cut = 1600  # frames ending at or before this sample must not move
    changed[:, cut:] = torch.randn(1, 3200 - cut)
    with torch.no_grad():
        before, after = model.frame_logits(wav), model.frame_logits(changed)
    frames = cut // model.frame_samples
    assert torch.allclose(before[:, :frames], after[:, :frames], atol=1e-6)
    assert not torch.allclose(before[:, frames:], after[:, frames:], atol=1e-4)


def test_set_rate_doubles_every_step_size_at_half_the_rate():
    model = LSSLClassifier(**SMALL)
    layers = [m for m in model.modules() if isinstance(m, LSSL)]
    trained = [layer.step_sizes() for layer in layers]
    model.set_rate(8000)
    assert model.sample_rate == 8000 and model.config["sample_rate"] == 16000
    for layer, dt in zip(layers, trained, strict=True):
        assert torch.allclose(layer.step_sizes(), 2 * dt)
    with torch.no_grad():  # the frame rate halves with the input
        assert model.frame_logits(torch.randn(1, 8000)).shape[1] == 500


def test_config_rebuilds_the_model():
    model = LSSLClassifier(num_classes=3, labels=["yes", "no", "up"], frontend="logmel", **SMALL).eval()
    copy = LSSLClassifier(**model.config).eval()
    copy.load_state_dict(model.state_dict())
    wav = torch.randn(1, 1600)
    with torch.no_grad():
        assert torch.equal(copy(wav), model(wav))
    assert copy.labels == ["yes", "no", "up"]
    with pytest.raises(ValueError, match="labels"):
        LSSLClassifier(num_classes=2, labels=["a"])


def test_too_short_input_is_refused():
    with pytest.raises(ValueError, match="at least 16 samples"):
        LSSLClassifier(**SMALL)(torch.randn(1, 10))


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_classifier_trains_end_to_end(frontend):
    torch.manual_seed(0)
    model = LSSLClassifier(**FRONTENDS[frontend], **SMALL)
    wav = 0.1 * torch.randn(2, 1600)
    loss = torch.nn.functional.cross_entropy(model(wav), torch.tensor([3, 7]))
    loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert torch.isfinite(loss) and not missing


def test_sliding_running_mean_streams_and_forgets():
    from audiokit.nn.pooling import RunningMean
    torch.manual_seed(0)
    x = torch.randn(2, 50, 3)
    pool = RunningMean(window=8)
    offline = pool(x)
    assert torch.allclose(offline[:, 20], x[:, 13:21].mean(1), atol=1e-6)
    assert torch.allclose(offline[:, 3], x[:, :4].mean(1), atol=1e-6)
    for window in (8, None):  # a stream may begin with an empty chunk
        pool = RunningMean(window=window)
        state, parts = None, []
        for chunk in (x[:, :0], *x.split(7, dim=1)):
            y, state = pool.step(chunk, state)
            parts.append(y)
        assert torch.allclose(torch.cat(parts, 1), pool(x), atol=1e-6)


def test_classifier_lengths_pick_each_items_last_frame():
    from audiokit.models.lssl_classifier import LSSLClassifier
    torch.manual_seed(0)
    model = LSSLClassifier(num_classes=3, sample_rate=8000, frontend="logmel", channels=16, state_size=8,
                           num_layers=2, pool_seconds=0.5).eval()
    short, long = torch.randn(4000), torch.randn(8000)
    batch = torch.stack([torch.nn.functional.pad(short, (0, 4000)), long])
    with torch.no_grad():
        both = model(batch, torch.tensor([4000, 8000]))
        assert torch.allclose(both[0], model(short[None])[0], atol=1e-5)
        assert torch.allclose(both[1], model(long[None])[0], atol=1e-5)


def test_conv_stem_streams_any_chunking_and_is_causal():
    from audiokit.nn.conv_stem import ConvStem
    torch.manual_seed(0)
    stem = ConvStem(40, [4, 8]).eval()
    assert stem.out_features == 8 * 10
    frames = torch.randn(2, 30, 40)
    with torch.no_grad():
        offline = stem(frames)
        state, parts = None, []
        for chunk in frames.split([0, 1, 0, 5, 2, 22], dim=1):  # an empty chunk keeps the state, first ones too
            y, state = stem.step(chunk, state)
            parts.append(y)
        assert torch.allclose(torch.cat(parts, 1), offline, atol=1e-6)
        assert offline.shape == (2, 30, 80)
        changed = frames.clone()
        changed[:, 20:] += 1.0  # causal: frames before 20 keep their outputs
        assert torch.equal(stem(changed)[:, :20], offline[:, :20])
        assert not torch.allclose(stem(changed)[:, 20:], offline[:, 20:])
    with pytest.raises(ValueError, match="to nothing"):
        ConvStem(3, [4, 4])
    with pytest.raises(ValueError, match="logmel"):
        LSSLClassifier(frontend="raw", stem_channels=[4], **SMALL)
