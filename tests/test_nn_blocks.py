"""MossFormer2 shared blocks: causal stepping, reference layout, state-dict names."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from audiokit.nn.dilated_fsmn import DilatedDenseNet, DilatedFSMN
from audiokit.nn.gated import ConvModule, DepthwiseConv1d, FFConvM, GatedDilatedFSMN, GatedFSMNBlock
from audiokit.nn.inference import depthwise_conv, linear, linear_silu
from audiokit.nn.norms import CumulativeInstanceNorm, CumulativeLayerNorm, ScaleNorm
from audiokit.nn.state import streaming

torch.set_num_threads(1)
SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
KEYS = SHARED / "parity" / "full_size_keys" / "mossformer2_ss_16k.txt"
T = 45
D = 8

# (name, builder(causal), input layout: "btd" = [B, T, D], "bct" = [B, C, T])
BLOCKS = {
    "dense": (lambda c: DilatedDenseNet(D, lorder=3, causal=c), "bct"),
    "dilated_fsmn": (lambda c: DilatedFSMN(D, D, 6, lorder=3, causal=c), "btd"),
    "depthwise": (lambda c: DepthwiseConv1d(D, 5, causal=c), "bct"),
    "conv_module": (lambda c: ConvModule(D, 5, causal=c), "btd"),
    "ffconvm_ln": (lambda c: FFConvM(D, 6, "layernorm", 5, causal=c), "btd"),
    "ffconvm_scale": (lambda c: FFConvM(D, 6, "scalenorm", 5, causal=c), "btd"),
    "gated_fsmn": (lambda c: GatedDilatedFSMN(D, D, 3, D, causal=c), "btd"),
    "gated_block": (lambda c: GatedFSMNBlock(6, D, lorder=3, causal=c), "btd"),
}
CAUSAL_ONLY = {
    "cum_layer_norm": (lambda: CumulativeLayerNorm(D), "bct"),
    "cum_instance_norm": (lambda: CumulativeInstanceNorm(D), "bct"),
}


def randomize(block: nn.Module) -> nn.Module:
    """Random parameters (so norms' affine terms and PReLU slopes matter); eval mode."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn_like(p) * 0.5 + (1.0 if p.dim() == 1 else 0.0))
    return block.eval()


def make_input(block: nn.Module, layout: str) -> torch.Tensor:
    dim = 6 if isinstance(block, GatedFSMNBlock) else D
    x = torch.randn(2, T, dim, generator=torch.Generator().manual_seed(0)) + 0.3
    return x if layout == "btd" else x.transpose(1, 2).contiguous()


def random_chunks(total: int, seed: int):
    rng, sizes = random.Random(seed), []
    while sum(sizes) < total:
        sizes.append(min(rng.choice([1, 3, 7, 16]), total - sum(sizes)))
    return sizes


def run_chunked(block, x, layout, use_context: bool):
    axis = 1 if layout == "btd" else 2
    pieces, state = [], None
    chunks = x.split(random_chunks(x.shape[axis], seed=int(use_context)), dim=axis)
    if use_context:
        model = nn.Sequential(nn.Identity(), block)  # the context reaches nested blocks
        with streaming(model):
            pieces = [model(c) for c in chunks]
    else:
        for c in chunks:
            y, state = block.step(c, state)
            pieces.append(y)
    return torch.cat(pieces, dim=axis)


def causal_cases():
    cases = {name: (lambda b=b: b(True), lay) for name, (b, lay) in BLOCKS.items()}
    cases.update(CAUSAL_ONLY)
    return cases


@pytest.mark.parametrize("use_context", [False, True], ids=["step", "streaming"])
@pytest.mark.parametrize("name", sorted(causal_cases()))
@torch.no_grad()
def test_causal_chunks_match_offline(name, use_context):
    build, layout = causal_cases()[name]
    block = randomize(build())
    x = make_input(block, layout)
    offline = block(x)
    err = (run_chunked(block, x, layout, use_context) - offline).abs().max().item()
    assert err <= 1e-5, f"{name}: chunked differs from offline by {err}"


@pytest.mark.parametrize("name", sorted(causal_cases()))
@torch.no_grad()
def test_causal_output_ignores_future(name):
    build, layout = causal_cases()[name]
    block = randomize(build())
    x = make_input(block, layout)
    changed = x.clone()
    cut = 20
    (changed[:, cut:] if layout == "btd" else changed[..., cut:]).add_(5.0)
    past = (lambda y: y[:, :cut]) if layout == "btd" else (lambda y: y[..., :cut])
    assert torch.allclose(past(block(x)), past(block(changed)), atol=1e-6)
    assert not torch.allclose(block(x), block(changed))


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_non_causal_refuses_to_step(name):
    build, layout = BLOCKS[name]
    block = build(False).eval()
    x = make_input(block, layout)
    with pytest.raises(RuntimeError, match="non-causal"):
        block.step(x, None)
    with pytest.raises(RuntimeError, match="non-causal"), streaming(block):
        block(x)


# -- straightforward re-derivations of the reference layout ----------------------------------

def dense_reference(net: DilatedDenseNet, x: torch.Tensor, lorder: int) -> torch.Tensor:
    """[B, C, T] through Conv2d on [B, C, T, 1] with symmetric padding, InstanceNorm2d, PReLU."""
    skip = x.unsqueeze(-1)
    for i in range(net.depth):
        dil = 2 ** i
        pad = lorder + (dil - 1) * (lorder - 1) - 1
        conv = getattr(net, f"conv{i + 1}")
        out = F.conv2d(F.pad(skip, (0, 0, pad, pad)), conv.weight, dilation=(dil, 1),
                       groups=net.channels)
        norm = getattr(net, f"norm{i + 1}")
        out = F.instance_norm(out, weight=norm.weight, bias=norm.bias, eps=1e-5)
        out = F.prelu(out, getattr(net, f"prelu{i + 1}").weight)
        skip = torch.cat([out, skip], dim=1)
    return out.squeeze(-1)


def cumulative_instance_norm_loop(x: torch.Tensor, norm: CumulativeInstanceNorm) -> torch.Tensor:
    """Frame by frame: normalise frame t by the (biased) statistics of frames 0..t."""
    out = torch.empty_like(x)
    for t in range(x.shape[-1]):
        past = x[..., : t + 1].double()
        mean, var = past.mean(-1), past.var(-1, unbiased=False)
        out[..., t] = ((x[..., t] - mean) / torch.sqrt(var + norm.eps)).float()
    return out * norm.weight[:, None] + norm.bias[:, None]


def dense_causal_reference(net: DilatedDenseNet, x: torch.Tensor, lorder: int) -> torch.Tensor:
    skip = x
    for i in range(net.depth):
        dil = 2 ** i
        weight = getattr(net, f"conv{i + 1}").weight.squeeze(-1)
        out = F.conv1d(F.pad(skip, (2 * (lorder - 1) * dil, 0)), weight, dilation=dil,
                       groups=net.channels)
        out = cumulative_instance_norm_loop(out, getattr(net, f"norm{i + 1}"))
        out = F.prelu(out, getattr(net, f"prelu{i + 1}").weight)
        skip = torch.cat([out, skip], dim=1)
    return out


@torch.no_grad()
def test_dense_net_matches_reference_layout():
    for causal, reference in [(False, dense_reference), (True, dense_causal_reference)]:
        net = randomize(DilatedDenseNet(D, lorder=4, depth=2, causal=causal))
        x = torch.randn(2, D, 30)
        assert torch.allclose(net(x), reference(net, x, 4), atol=1e-5), f"causal={causal}"


@torch.no_grad()
def test_cumulative_layer_norm_matches_loop():
    norm = randomize(CumulativeLayerNorm(D))
    x = torch.randn(2, D, 20) * 3 + 1
    expected = torch.stack([(x[..., t] - x[..., : t + 1].mean((1, 2))[:, None])
                            / torch.sqrt(x[..., : t + 1].var((1, 2), unbiased=False)[:, None] + 1e-8)
                            for t in range(20)], dim=-1)
    assert torch.allclose(norm(x), expected * norm.weight[:, None] + norm.bias[:, None], atol=1e-5)


def ffconvm_reference(m: FFConvM, x: torch.Tensor) -> torch.Tensor:
    norm, linear, _, conv_module, _ = m.mdl
    if isinstance(norm, ScaleNorm):
        h = x / (x.norm(dim=-1, keepdim=True) * x.shape[-1] ** -0.5).clamp(min=1e-5) * norm.g
    else:
        h = F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias)
    h = F.silu(F.linear(h, linear.weight, linear.bias))
    conv = conv_module.sequential[1].conv
    k = conv.kernel_size[0]
    return h + F.conv1d(h.transpose(1, 2), conv.weight, padding=(k - 1) // 2,
                        groups=h.shape[-1]).transpose(1, 2)


@torch.no_grad()
def test_gated_block_matches_reference_layout():
    block = randomize(GatedFSMNBlock(6, D, lorder=3))
    x = make_input(block, "btd")
    g = block.gated_fsmn

    def channel_ln(norm, h):  # h: [B, C, T]
        return F.layer_norm(h.transpose(1, 2), h.shape[1:2], norm.weight, norm.bias).transpose(1, 2)

    h = channel_ln(block.norm1, F.prelu(block.conv1[0](x.transpose(1, 2)), block.conv1[1].weight))
    h = h.transpose(1, 2)
    u, v = ffconvm_reference(g.to_u, h), ffconvm_reference(g.to_v, h)
    p = g.fsmn.project(F.relu(g.fsmn.linear(u)))
    u = u + dense_reference(g.fsmn.conv, p.transpose(1, 2), 3).transpose(1, 2)
    seq = v * u + h
    expected = x + block.conv2(channel_ln(block.norm2, seq.transpose(1, 2))).transpose(1, 2)
    assert torch.allclose(block(x), expected, atol=1e-5)
    for norm in ("layernorm", "scalenorm"):
        m = randomize(FFConvM(D, 6, norm, 5))
        assert torch.allclose(m(make_input(m, "btd")), ffconvm_reference(m, make_input(m, "btd")),
                              atol=1e-5)


# -- official parameter names -------------------------------------------------------------------

def official_subdict(prefix: str) -> dict:
    if not KEYS.exists():
        pytest.skip(f"{KEYS} absent")
    shapes = {}
    for line in KEYS.read_text().splitlines():
        key, shape = line.split("\t")
        if key.startswith(prefix):
            shapes[key[len(prefix):]] = json.loads(shape)
    return shapes


def own_shapes(module: nn.Module) -> dict:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.shared
@pytest.mark.parametrize("causal", [False, True])
def test_gated_block_names_match_official(causal):
    expected = official_subdict("mask_net.mdl.intra_mdl.mossformerM.fsmn.0.")
    block = GatedFSMNBlock(512, 256, lorder=20, causal=causal)
    assert own_shapes(block) == expected
    block.load_state_dict({k: torch.zeros(s) for k, s in expected.items()})


@pytest.mark.shared
def test_ffconvm_scalenorm_names_match_official():
    expected = official_subdict("mask_net.mdl.intra_mdl.mossformerM.layers.0.to_hidden.")
    assert own_shapes(FFConvM(512, 2048, "scalenorm")) == expected


@pytest.mark.shared
def test_small_checkpoint_subdict_loads():
    path = SHARED / "parity" / "mossformer2_ss_16k_small" / "checkpoint.pt"
    if not path.exists():
        pytest.skip(f"{path} absent")
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    prefix = "mask_net.mdl.intra_mdl.mossformerM.fsmn.1."
    sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    block = GatedFSMNBlock(64, 256, lorder=20)
    block.load_state_dict(sub)  # strict: every name and shape must agree
    assert torch.equal(block.gated_fsmn.fsmn.conv.conv2.weight, sub["gated_fsmn.fsmn.conv.conv2.weight"])


def test_linear_matches_f_linear_and_keeps_gradients():
    x = torch.randn(2, 7, 12 * 2)[..., ::2]  # strided input
    weight, bias = torch.randn(5, 12, requires_grad=True), torch.randn(5)
    with torch.no_grad():
        inferred = linear(x, weight, bias)
        assert torch.allclose(inferred, F.linear(x, weight, bias), atol=1e-5)
        assert torch.allclose(linear(x, weight), F.linear(x, weight), atol=1e-5)
        assert torch.allclose(linear_silu(x, weight, bias), F.silu(F.linear(x, weight, bias)), atol=1e-5)
    trained = linear(x, weight, bias)
    assert torch.equal(trained, F.linear(x, weight, bias))
    trained.sum().backward()
    assert torch.allclose(weight.grad, x.sum((0, 1)).expand(5, 12))


@pytest.mark.parametrize("dilation", [1, 2, 4])
@pytest.mark.parametrize("length", [9, 40, 41])
def test_depthwise_conv_training_path_matches_conv1d(dilation, length):
    """The polyphase (training) and 2-D (inference) forms give conv1d's output and gradients."""
    x = torch.randn(2, length, 6).transpose(1, 2).requires_grad_(True)  # channels-last memory
    weight = torch.randn(6, 1, 3, requires_grad=True)
    expected = F.conv1d(F.pad(x, (2, 2)), weight, dilation=dilation, groups=6)
    with torch.no_grad():
        assert torch.allclose(depthwise_conv(x, weight, 2, dilation), expected, atol=1e-5)
    trained = depthwise_conv(x, weight, 2, dilation)
    assert trained.shape == expected.shape and torch.allclose(trained, expected, atol=1e-5)
    grad = torch.randn_like(expected)
    got = torch.autograd.grad(trained, (x, weight), grad)
    want = torch.autograd.grad(expected, (x, weight), grad)
    assert all(torch.allclose(g, w, atol=1e-4) for g, w in zip(got, want))


@torch.no_grad()
@pytest.mark.parametrize("causal", [False, True])
def test_conv_module_adds_in_place_block_by_block(causal):
    module = randomize(ConvModule(D, 5, causal=causal))
    for length in (1, 7, 16, 37):
        x = torch.randn(2, length, D)
        expected = module(x)
        summed = module.add_to_(x, block=8)
        assert summed is x and torch.allclose(summed, expected, atol=1e-6)
    with pytest.raises(ValueError, match="block"):
        module.add_to_(x, block=1)


def test_scale_norm_in_place_only_when_inferring():
    norm, inplace = randomize(ScaleNorm(D)), randomize(ScaleNorm(D, inplace=True))
    x = torch.randn(2, 5, D, requires_grad=True)
    expected = norm(x)
    trained = inplace(x)  # an autograd graph records x: it is left alone
    assert torch.equal(trained, expected) and trained.data_ptr() != x.data_ptr()
    trained.square().sum().backward()
    expected.square().sum().backward()
    assert torch.allclose(inplace.g.grad, norm.g.grad)
    with torch.no_grad():
        inferred = inplace(x.detach())
    assert inferred.data_ptr() == x.data_ptr() and torch.equal(inferred, expected.detach())
