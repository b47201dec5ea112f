"""The streaming runtime: exact for causal models, bounded windows for the rest."""
import numpy as np
import pytest
import torch

from audiokit.models.frcrn import FRCRN
from audiokit.streaming.runtime import CausalStream, WindowedStream, open_stream, process

torch.set_num_threads(1)  # the machine is shared: extra threads only spin and wait


def small_frcrn(causal=True, **kw):
    torch.manual_seed(0)
    args = dict(win_len=320, win_inc=160, fft_len=320, channels=8, fsmn_hidden=8, causal=causal)
    args.update(kw)
    model = FRCRN(**args).eval()
    # make batch-norm statistics non-trivial so that a state bug cannot hide
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


def random_chunks(total, rng):
    sizes = []
    while sum(sizes) < total:
        sizes.append(int(rng.choice([1, 7, 80, 160, 333, 1000, 2400])))
    return sizes


@pytest.mark.parametrize("seed,level_dbfs", [(0, None), (1, None), (2, None), (0, -20.0), (1, -30.0)])
def test_causal_frcrn_stream_equals_offline(seed, level_dbfs):
    """Also with the input-level normalisation, on a quiet and a louder channel whose level changes."""
    model = small_frcrn(level_dbfs=level_dbfs, level_seconds=0.1)
    rng = np.random.default_rng(seed)
    wav = torch.randn(2, 8000 + seed * 37) * torch.tensor([[0.1], [0.002]])
    wav[1, 4000:] *= 30.0
    with torch.no_grad():
        offline = model.enhance(wav)
    stream = CausalStream(model, channels=2)
    outs, pos = [], 0
    for size in random_chunks(wav.shape[-1], rng):
        outs.append(stream.feed(wav[:, pos:pos + size]))
        pos += size
    outs.append(stream.flush())
    streamed = torch.cat(outs, dim=-1)
    assert streamed.shape == offline.shape
    assert (streamed - offline).abs().max() <= 1e-5


@pytest.mark.parametrize("sizes,level_dbfs", [("random", None), ("large", None), ("random", -25.0)])
def test_causal_frcrn_on_chunks_equals_frames_and_offline(sizes, level_dbfs):
    """Without a frame engine (files: large chunks) the model's own step runs on each chunk, state carried over."""
    model = small_frcrn(level_dbfs=level_dbfs, level_seconds=0.1)
    wav = torch.randn(2, 9000) * torch.tensor([[0.1], [0.002]])
    with torch.no_grad():
        offline = model.enhance(wav)
    framed = process(model, wav, 1000)  # the frame engine (TorchScript in the tests)
    stream = CausalStream(model, channels=2, frames=False)
    assert stream.backend == "model" and stream._engine is None
    chunks = random_chunks(wav.shape[-1], np.random.default_rng(3)) if sizes == "random" else [4000] * 3
    outs, pos = [], 0
    for size in chunks:
        outs.append(stream.feed(wav[:, pos:pos + size]))
        pos += size
    outs.append(stream.flush())
    chunked = torch.cat(outs, dim=-1)
    assert chunked.shape == offline.shape == framed.shape
    assert (chunked - offline).abs().max() <= 1e-5
    assert (chunked - framed).abs().max() <= 1e-5


def test_stream_output_is_causal_and_delivered_within_latency():
    model = small_frcrn()
    wav = torch.randn(4000) * 0.1
    stream = CausalStream(model)
    delivered = 0
    for i in range(0, 4000, 160):
        delivered += stream.feed(wav[i:i + 160]).shape[-1]
        assert i + 160 - delivered <= stream.latency_samples
    # a change at sample 3000 does not move earlier output
    other = wav.clone()
    other[3000:] += 1.0
    with torch.no_grad():
        a, b = model.enhance(wav[None]), model.enhance(other[None])
    assert torch.equal(a[..., :3000 - model.win_len], b[..., :3000 - model.win_len])
    assert not torch.allclose(a[..., 3200:], b[..., 3200:])


def test_non_causal_model_refuses_exact_streaming_and_uses_windows():
    model = small_frcrn(causal=False)
    with pytest.raises(RuntimeError):
        with torch.no_grad():
            CausalStream(model).feed(torch.zeros(320))
    stream = open_stream(model, window=4000, overlap=800)
    assert isinstance(stream, WindowedStream) and stream.latency_samples == 4000


def test_windowed_stream_reconstructs_identity_exactly():
    wav = torch.randn(1, 10007)
    for chunk in (1, 999, 5000):
        out = process(type("Id", (), {"causal": False, "sample_rate": 1000,
                                      "enhance": staticmethod(lambda x: x)})(), wav, chunk,
                      window=3000, overlap=500)
        assert out.shape == wav.shape
        assert torch.allclose(out, wav, atol=1e-6)


def test_windowed_stream_crossfades_between_windows():
    # a model that adds a constant per window: the output must move smoothly between windows
    calls = []

    def enhance(x):
        calls.append(x.shape[-1])
        return torch.full_like(x, float(len(calls)))
    stream = WindowedStream(enhance, window=1000, overlap=200)
    out = torch.cat([stream.feed(torch.zeros(1, 2500)), stream.flush()], dim=-1)
    assert out.shape[-1] == 2500
    assert out.diff(dim=-1).abs().max() < 0.05


def test_short_clip_and_silence():
    model = small_frcrn()
    for length in (1, 100, 159):
        out = process(model, torch.zeros(1, length), chunk=64)
        assert out.shape == (1, length) and torch.isfinite(out).all()
