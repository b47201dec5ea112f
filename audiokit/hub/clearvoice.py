"""Official ClearerVoice-Studio checkpoints in audiokit models.

``load_clearvoice(name, checkpoint, **constructor_args)`` builds our model
for the official network ``name`` from the reference constructor arguments,
maps the official state-dict keys onto ours, checks every key (a missing,
unexpected or mis-shaped key is an error, never skipped) and returns the
model in eval mode.  :func:`clearvoice_pipeline` is the reference
waveform-in/waveform-out decode path on top of it.
"""
from __future__ import annotations

import re
from typing import Callable, Dict

import numpy as np
import torch

from ..errors import CheckpointError, ModelError
from ..models.frcrn import FRCRN
from ..models.mossformer2 import MossFormer2Enhancer, MossFormer2Separator
from ..nn.checkpoint import StateDict, load_strict, read_state_dict

# FRCRN: each U-Net registers its stages twice, as ``encoderN`` and in the
# list ``encoders.N``; ours are the lists.
_FRCRN_RENAMES = [(re.compile(rf"(^|\.){old}(\d+)\."), rf"\1{new}.\2.") for old, new in (
    ("encoder", "encoders"), ("decoder", "decoders"), ("fsmn_enc", "fsmn_enc"),
    ("fsmn_dec", "fsmn_dec"), ("se_layer_enc", "se_layers_enc"), ("se_layer_dec", "se_layers_dec"))]
_FRCRN_STFT_KEYS = ("stft.weight", "istft.weight", "istft.window", "istft.enframe")


def _frcrn_model(complex=True, model_complexity=45, model_depth=14, log_amp=False,
                 padding_mode="zeros", win_len=640, win_inc=320, fft_len=640,
                 win_type="hanning") -> FRCRN:
    """Our FRCRN from the reference ``DCCRN`` constructor arguments.

    ``model_complexity`` has no effect at depth 14 in the reference either.
    """
    if not complex or model_depth != 14 or log_amp or padding_mode != "zeros":
        raise ModelError("only the published FRCRN configuration is supported: complex=True, "
                         "model_depth=14, log_amp=False, padding_mode='zeros'")
    return FRCRN(win_len=win_len, win_inc=win_inc, fft_len=fft_len, win_type=win_type,
                 reference_layout=True)


def _frcrn_state(model: FRCRN, state: StateDict, path) -> StateDict:
    """Official FRCRN keys -> ours; the fixed STFT kernels are checked, then adopted."""
    mapped: StateDict = {}
    for key, value in state.items():
        if key in _FRCRN_STFT_KEYS:
            continue
        new = key
        for pattern, repl in _FRCRN_RENAMES:
            new = pattern.sub(repl, new)
        if new in mapped and not torch.equal(mapped[new], value):
            raise CheckpointError(path, f"{key} and its alias disagree")
        mapped[new] = value
    _adopt_stft_kernels(model, state, path)
    return mapped


def _adopt_stft_kernels(model: FRCRN, state: StateDict, path) -> None:
    missing = [k for k in _FRCRN_STFT_KEYS if k not in state]
    if missing:
        raise CheckpointError(path, f"missing keys: {', '.join(missing)}")
    ours = {"stft.weight": model.stft.weight, "istft.weight": model.istft.weight,
            "istft.window": model.istft.window_sq.sqrt().view(1, -1, 1),
            "istft.enframe": torch.eye(model.win_len)[:, None, :]}
    for key, expected in ours.items():
        if state[key].shape != expected.shape or not torch.allclose(state[key].float(), expected, atol=1e-5):
            raise CheckpointError(path, f"{key} is not the STFT this model was built with "
                                        f"(shape {tuple(state[key].shape)})")
    model.stft.weight.copy_(state["stft.weight"])
    model.istft.weight.copy_(state["istft.weight"])


# MossFormer2: one rotary embedding is shared by all attention layers, so the
# published state dicts repeat layer 0's ``rotary_pos_emb.freqs`` for every
# layer; the copies are optional and must agree.
_ROTARY_ALIAS = re.compile(r"^(.*\.layers\.)(\d+)(\.rotary_pos_emb\.freqs)$")


def _mossformer2_state(model: torch.nn.Module, state: StateDict, path) -> StateDict:
    """MossFormer2 checkpoint keys are ours; the rotary aliases are checked and completed."""
    mapped = dict(state)
    for key in model.state_dict():
        match = _ROTARY_ALIAS.match(key)
        if not match or match.group(2) == "0":
            continue
        canonical = f"{match.group(1)}0{match.group(3)}"
        if canonical not in state:
            continue  # reported as missing by load_strict
        if key not in state:
            mapped[key] = state[canonical]
        elif state[key].shape != state[canonical].shape or not torch.equal(state[key], state[canonical]):
            raise CheckpointError(path, f"{key} and its alias {canonical} disagree")
    return mapped


def _mossformer2_builder(cls: type) -> Callable:
    """Builds ``cls`` from the reference constructor arguments (``MossFormer`` for separation,
    ``MossFormer_MaskNet`` inside ``TestNet`` for 48 kHz enhancement)."""

    def build(**constructor_args) -> torch.nn.Module:
        try:
            return cls(**constructor_args)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"bad {cls.__name__} constructor arguments: {exc}") from None

    return build


_BUILDERS: Dict[str, Callable] = {"FRCRN_SE_16K": _frcrn_model,
                                  "MossFormer2_SS_16K": _mossformer2_builder(MossFormer2Separator),
                                  "MossFormer2_SE_48K": _mossformer2_builder(MossFormer2Enhancer)}
_MAPPERS: Dict[str, Callable] = {"FRCRN_SE_16K": _frcrn_state,
                                 "MossFormer2_SS_16K": _mossformer2_state,
                                 "MossFormer2_SE_48K": _mossformer2_state}


def clearvoice_names():
    """Official network names that :func:`load_clearvoice` knows."""
    return sorted(_BUILDERS)


def load_clearvoice(name: str, checkpoint, **constructor_args) -> torch.nn.Module:
    """Our model for official network ``name`` with the weights of ``checkpoint``, in eval mode."""
    if name not in _BUILDERS:
        raise ModelError(f"unknown ClearerVoice network {name!r}; known: {', '.join(clearvoice_names())}")
    model = _BUILDERS[name](**constructor_args)
    state = read_state_dict(checkpoint)
    with torch.no_grad():
        load_strict(model, _MAPPERS[name](model, state, checkpoint), checkpoint)
    return model.eval()


def _padded_length(length: int, sample_rate: int, decode_window: float = 1.0) -> int:
    """Length after the reference decoder's zero-padding rule (window ``decode_window`` s, stride 3/4)."""
    window = int(sample_rate * decode_window)
    stride = int(window * 0.75)
    if length < window:
        return window
    if length < window + stride:
        return window + stride
    if (length - window) % stride:
        return length + length - (length - window) // stride * stride
    return length


def _decode_in_windows(run: Callable, wav: np.ndarray, rate: int, decode_window: float) -> np.ndarray:
    """The reference segmented decoding of a long clip ``[T]``: ``[..., padded T]``.

    Zero-pads by the reference rule, runs ``run`` (``[1, W] -> [..., W]``
    numpy) on windows of ``decode_window`` s with stride 3/4 and keeps each
    window's centre (the first window also its start).
    """
    x = torch.from_numpy(np.asarray(wav, dtype=np.float32))[None]
    x = torch.nn.functional.pad(x, (0, _padded_length(len(wav), rate, decode_window) - len(wav)))
    window = int(rate * decode_window)
    stride = int(window * 0.75)
    give_up = (window - stride) // 2
    out = None
    for start in range(0, x.shape[-1] - window + 1, stride):
        seg = run(x[:, start:start + window])
        if out is None:
            out = np.zeros(seg.shape[:-1] + (x.shape[-1],))
        keep = 0 if start == 0 else give_up
        out[..., start + keep:start + window - give_up] = seg[..., keep:window - give_up]
    return out


def _mossformer2_ss_pipeline(model: MossFormer2Separator, wav: np.ndarray, one_time_decode_length: float = 2,
                             decode_window: float = 2) -> np.ndarray:
    """Reference MossFormer2_SS_16K decoding of ``[T]``: ``[num_spks, T]``.

    Clips up to ``one_time_decode_length`` s: one pass on the clip zero-padded
    by the reference rule; longer ones: :func:`_decode_in_windows`.  Every
    speaker is then scaled to the input RMS (its own RMS measured over the
    padded length) and trimmed to ``T``.
    """
    rate, length = model.sample_rate, len(wav)
    rms_in = (wav ** 2).mean() ** 0.5
    if length <= rate * one_time_decode_length:
        padded = np.zeros(_padded_length(length, rate, decode_window), dtype=np.float32)
        padded[:length] = wav
        out = model(torch.from_numpy(padded)[None])[0].numpy()
    else:
        out = _decode_in_windows(lambda w: model(w)[0].numpy(), wav, rate, decode_window)
    rms_out = (out ** 2).mean(axis=1, keepdims=True) ** 0.5
    return (out / rms_out * rms_in)[:, :length].astype(np.float32)


def _mossformer2_se_pipeline(model: MossFormer2Enhancer, wav: np.ndarray, one_time_decode_length: float = 20,
                             decode_window: float = 4) -> np.ndarray:
    """Reference MossFormer2_SE_48K decoding of ``[T]``: ``[T]``.

    Clips up to ``one_time_decode_length`` s go through :meth:`MossFormer2Enhancer.enhance`
    whole (no padding); longer ones: :func:`_decode_in_windows`.
    """
    rate, length = model.sample_rate, len(wav)
    if length <= rate * one_time_decode_length:
        return model.enhance(torch.from_numpy(wav)[None])[0].numpy()
    out = _decode_in_windows(lambda w: model.enhance(w)[0].numpy(), wav, rate, decode_window)
    return out[:length].astype(np.float32)


@torch.no_grad()
def clearvoice_pipeline(model: torch.nn.Module, wav: np.ndarray, sample_rate: int = 16000,
                        **decode_settings) -> np.ndarray:
    """The reference decode path for one mono clip ``[T]`` (float, [-1, 1]).

    Returns ``[T]``, or ``[num_spks, T]`` for a :class:`MossFormer2Separator`.

    FRCRN: zero-pads as the reference decoder does, runs the network once and
    trims to the input length.  (The reference decodes clips over 120 s in 1 s
    windows; audiokit's own runtime handles long inputs instead.)
    MossFormer2 models run at their own ``sample_rate`` with the official
    inference settings, which ``decode_settings`` (``one_time_decode_length``,
    ``decode_window``, in seconds) may override; see
    :func:`_mossformer2_ss_pipeline` and :func:`_mossformer2_se_pipeline`.
    """
    wav = np.asarray(wav, dtype=np.float32)
    if isinstance(model, MossFormer2Separator):
        return _mossformer2_ss_pipeline(model, wav, **decode_settings)
    if isinstance(model, MossFormer2Enhancer):
        return _mossformer2_se_pipeline(model, wav, **decode_settings)
    if not isinstance(model, FRCRN):
        raise ModelError("clearvoice_pipeline supports FRCRN and MossFormer2 models")
    x = torch.as_tensor(np.asarray(wav, dtype=np.float32))
    padded = torch.nn.functional.pad(x, (0, _padded_length(len(x), sample_rate) - len(x)))
    return model(padded[None]).wav[0, :len(x)].numpy()
