"""MossFormer2 speech separation (16 kHz) and enhancement (48 kHz).

Both models share :class:`MossFormerMaskNet`: a channel norm and 1x1 conv
into the sequence width, scaled sinusoidal positions, ``num_blocks``
MossFormer blocks interleaved with gated FSMN blocks
(:class:`~audiokit.models.mossformer2_blocks.MossFormerLayers`), and a gated
1x1-conv head giving one non-negative mask per speaker.

* :class:`MossFormer2Separator` (published MossFormer2_SS_16K): conv encoder
  (kernel 16, stride 8, ReLU) -> masks -> transposed-conv decoder, any number
  of speakers.
* :class:`MossFormer2Enhancer` (published MossFormer2_SE_48K): the mask net
  reads 180-dim log-mel fbank + deltas and predicts a real mask over the 961
  bins of a 1920/384 Hamming STFT at 48 kHz.

Default arguments are the published sizes; attribute names reproduce the
published state-dict keys.  ``causal=True`` builds every block in its causal
configuration (attention over the past, causal FSMN memories and convs,
cumulative norms).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..audio.features import fbank_with_deltas
from ..nn.dropout import set_dropout
from ..nn.inference import pointwise
from ..nn.norms import CumulativeLayerNorm
from ..nn.state import State, StreamingModule, cat_history
from .mossformer2_blocks import MossFormerLayers, ScaledSinusoidalEmbedding


def _channel_norm(norm: str, channels: int, causal: bool) -> nn.Module:
    """``[B, C, T]`` norm over channels and time ("ln"); causal: over frames so far."""
    if norm != "ln":
        raise ValueError(f"only norm='ln' (the published choice) is supported, got {norm!r}")
    return CumulativeLayerNorm(channels) if causal else nn.GroupNorm(1, channels, eps=1e-8)


class MossFormerSequenceModel(nn.Module):
    """:class:`MossFormerLayers` then LayerNorm, ``[B, T, D] -> [B, T, D]``."""

    def __init__(self, dim: int, num_blocks: int, causal: bool = False, dilated_fsmn: bool = True):
        super().__init__()
        self.mossformerM = MossFormerLayers(dim, num_blocks, causal=causal, dilated_fsmn=dilated_fsmn)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.mossformerM(x))


class ComputationBlock(nn.Module):
    """Sequence model, channel norm and skip, ``[B, D, T] -> [B, D, T]``."""

    def __init__(self, num_blocks: int, dim: int, norm: str = "ln", skip_around_intra: bool = True,
                 causal: bool = False, dilated_fsmn: bool = True):
        super().__init__()
        self.skip_around_intra = skip_around_intra
        self.intra_mdl = MossFormerSequenceModel(dim, num_blocks, causal, dilated_fsmn)
        self.intra_norm = _channel_norm(norm, dim, causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.intra_norm(self.intra_mdl(x.transpose(1, 2)).transpose(1, 2))
        return y + x if self.skip_around_intra else y


class MossFormerMaskNet(nn.Module):
    """Mask estimator, ``[B, C_in, T] -> [B, num_spks, C_out, T]`` (non-negative).

    Args:
        in_channels: ``C_in`` (encoder filters, or feature size).
        out_channels: sequence width of the MossFormer blocks.
        out_channels_final: ``C_out`` (default ``in_channels``).
        num_blocks: MossFormer + gated FSMN block pairs (published: 24).
        norm: ``"ln"`` (channel-and-time layer norm).
        num_spks: number of masks.
        skip_around_intra, use_global_pos_enc: as published (True).
        causal: causal configuration of every block.
        dilated_fsmn: dilated dense FSMN memories (separation) or plain ones (48 kHz SE).
    """

    def __init__(self, in_channels: int, out_channels: int, out_channels_final: Optional[int] = None,
                 num_blocks: int = 24, norm: str = "ln", num_spks: int = 2,
                 skip_around_intra: bool = True, use_global_pos_enc: bool = True,
                 causal: bool = False, dilated_fsmn: bool = True):
        super().__init__()
        self.num_spks = num_spks
        self.norm = _channel_norm(norm, in_channels, causal)
        self.conv1d_encoder = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.pos_enc = ScaledSinusoidalEmbedding(out_channels) if use_global_pos_enc else None
        self.mdl = ComputationBlock(num_blocks, out_channels, norm, skip_around_intra, causal, dilated_fsmn)
        self.prelu = nn.PReLU()
        self.conv1d_out = nn.Conv1d(out_channels, out_channels * num_spks, 1)
        self.output = nn.Sequential(nn.Conv1d(out_channels, out_channels, 1), nn.Tanh())
        self.output_gate = nn.Sequential(nn.Conv1d(out_channels, out_channels, 1), nn.Sigmoid())
        self.conv1_decoder = nn.Conv1d(out_channels, out_channels_final or in_channels, 1, bias=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """``offset``: index of the first frame of ``x`` (positions, when streaming).

        The 1x1 convs run as linear maps on the frames (``[B, T, C]`` memory throughout).
        """
        x = pointwise(self.conv1d_encoder, self.norm(x).transpose(1, 2))  # [B, T, D]
        if self.pos_enc is not None:
            x = x + self.pos_enc(x.shape[1], offset)
        x = pointwise(self.conv1d_out, self.prelu(self.mdl(x.transpose(1, 2))).transpose(1, 2))
        x = x.unflatten(-1, (self.num_spks, -1))  # [B, T, num_spks, D]
        (output, tanh), (gate, sigmoid) = self.output, self.output_gate
        masks = pointwise(self.conv1_decoder, tanh(pointwise(output, x)) * sigmoid(pointwise(gate, x)))
        return F.relu(masks).permute(0, 2, 3, 1)


class WaveEncoder(nn.Module):
    """Strided conv filterbank with ReLU, ``[B, T] -> [B, C, N]``, ``N = (T - K) // (K/2) + 1``."""

    def __init__(self, kernel_size: int = 16, channels: int = 512):
        super().__init__()
        self.conv1d = nn.Conv1d(1, channels, kernel_size, stride=kernel_size // 2, bias=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv1d(wav.unsqueeze(1)))


class MossFormer2Separator(StreamingModule):
    """MossFormer2 speech separation, waveform in, one waveform per speaker out.

    Args:
        in_channels: encoder filters (published: 512).
        out_channels: MossFormer width (published: 512; must equal ``in_channels``).
        num_blocks: MossFormer block pairs (published: 24).
        kernel_size: encoder/decoder filter length in samples, stride ``kernel_size // 2``.
        norm, skip_around_intra, use_global_pos_enc: as published.
        num_spks: number of output sources.
        max_length: accepted for compatibility with the published constructor (unused).
        causal: low-latency variant: every block causal (see the module
            docstring); it streams with a latency of ``kernel_size`` samples.
        sample_rate: of the waveforms (published: 16000).
        dropout: rate of every dropout layer while training (published: 0.1); a small
            model trained on endless fresh mixtures underfits and does better without.

    ``forward(wav [B, T]) -> [B, num_spks, T]`` (decoder output padded or
    trimmed to ``T``, as published).  :meth:`separate` is the same for the
    non-causal model; for the causal one it is the output aligned with the
    stream (see :meth:`separate`).
    """

    def __init__(self, in_channels: int = 512, out_channels: int = 512, num_blocks: int = 24,
                 kernel_size: int = 16, norm: str = "ln", num_spks: int = 2,
                 skip_around_intra: bool = True, use_global_pos_enc: bool = True,
                 max_length: int = 20000, causal: bool = False, sample_rate: int = 16000,
                 dropout: float = 0.1):
        super().__init__()
        if in_channels != out_channels:
            raise ValueError("MossFormer2 separation needs in_channels == out_channels "
                             f"(the decoder reads the encoder output); got {in_channels}, {out_channels}")
        #: constructor arguments, saved with pretrained weights
        self.config = dict(in_channels=in_channels, out_channels=out_channels, num_blocks=num_blocks,
                           kernel_size=kernel_size, norm=norm, num_spks=num_spks,
                           skip_around_intra=skip_around_intra, use_global_pos_enc=use_global_pos_enc,
                           max_length=max_length, causal=causal, sample_rate=sample_rate, dropout=dropout)
        self.sample_rate, self.num_spks, self.causal = sample_rate, num_spks, causal
        self.enc = WaveEncoder(kernel_size, in_channels)
        self.mask_net = MossFormerMaskNet(in_channels, out_channels, None, num_blocks, norm, num_spks,
                                          skip_around_intra, use_global_pos_enc, causal)
        self.dec = nn.ConvTranspose1d(out_channels, 1, kernel_size, stride=kernel_size // 2, bias=False)
        set_dropout(self, dropout)

    @property
    def hop_length(self) -> int:
        """Samples per encoder frame (the streaming step)."""
        return self.enc.conv1d.stride[0]

    @property
    def stream_lead(self) -> int:
        """Zero samples before the signal so that its first sample is covered by full frames."""
        return self.enc.conv1d.kernel_size[0] - self.hop_length

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency of the causal variant: one encoder window."""
        return self.enc.conv1d.kernel_size[0]

    def decode(self, features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Masked encoder features to waveforms: ``[B, C, N]``, ``[B, S, C, N]`` -> ``[B, S, T']``."""
        b, s, c, n = masks.shape
        return self.dec((features.unsqueeze(1) * masks).reshape(b * s, c, n)).view(b, s, -1)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        features = self.enc(wav)
        out = self.decode(features, self.mask_net(features))
        length = wav.shape[-1]
        return F.pad(out, (0, max(0, length - out.shape[-1])))[..., :length]

    def separate(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, T] -> [B, num_spks, T]``.

        Causal model: ``stream_lead`` zeros in front and the last hop completed
        with zeros, so every sample is covered by full frames; the streaming
        runtime reproduces this output chunk by chunk.
        """
        if not self.causal:
            return self.forward(wav)
        length = wav.shape[-1]
        padded = F.pad(wav, (self.stream_lead, (-length) % self.hop_length))
        return self.forward(padded)[..., self.stream_lead:self.stream_lead + length]

    def step(self, wav: torch.Tensor, state: Optional[State]) -> Tuple[torch.Tensor, State]:
        """Stream ``[B, k * hop_length]`` samples in, ``[B, num_spks, k * hop_length]`` out.

        Use under :func:`audiokit.nn.state.streaming` (the inner blocks keep
        their own states there); output sample ``i`` of the stream is sample
        ``i`` of :meth:`forward` on the zero-led signal (``stream_lead`` early).
        """
        if not self.causal:
            raise RuntimeError("the non-causal MossFormer2 looks at the whole clip; stream it in windows")
        state = state or {}
        frames_before = int(state["frames"]) if "frames" in state else 0
        full, history = cat_history(state.get("history"), wav, self.stream_lead)
        features = self.enc(full)
        out = self.decode(features, self.mask_net(features, frames_before))
        overlap = self.stream_lead
        if "tail" in state:
            out = torch.cat((out[..., :overlap] + state["tail"], out[..., overlap:]), dim=-1)
        new_state = {"history": history, "frames": torch.tensor(frames_before + features.shape[-1]),
                     "tail": out[..., out.shape[-1] - overlap:]}
        return out[..., :out.shape[-1] - overlap], new_state

    def flush(self, state: State) -> torch.Tensor:
        """The last ``stream_lead`` output samples held in a stream's ``state``, ``[B, num_spks, stream_lead]``."""
        return state["tail"]


def deepen(model: MossFormer2Separator, trained: dict) -> int:
    """Start ``model`` from the state dict of a trained separator with fewer block pairs.

    Every weight of ``trained`` is loaded (all shapes must match); each extra MossFormer + gated
    FSMN pair of ``model`` (appended after the trained ones) keeps its fresh weights except its
    two output projections, which are zeroed, so that both blocks start as the identity (their
    outputs are residual) and ``model`` computes exactly what the trained separator did.  Returns
    the number of added pairs.
    """
    own = model.state_dict()
    layers = "mask_net.mdl.intra_mdl.mossformerM."
    fresh = sorted(set(own) - set(trained))
    if set(trained) - set(own) or any(own[k].shape != v.shape for k, v in trained.items() if k in own):
        raise ValueError("the trained separator does not match the deepened one outside the added blocks")
    if not all(k.startswith((layers + "layers.", layers + "fsmn.")) for k in fresh):
        raise ValueError(f"keys missing from the trained separator beyond block pairs: {fresh[:3]}")
    added = {int(k[len(layers):].split(".")[1]) for k in fresh}
    state = {**own, **trained}
    for index in added:
        for out in (f"layers.{index}.to_out.mdl.1", f"fsmn.{index}.conv2"):
            for name in ("weight", "bias"):
                state[f"{layers}{out}.{name}"] = torch.zeros_like(own[f"{layers}{out}.{name}"])
    model.load_state_dict(state, strict=True)
    return len(added)


class MossFormer2Enhancer(nn.Module):
    """MossFormer2 48 kHz speech enhancement: a real mask on the STFT from fbank features.

    Args:
        in_channels: feature size, ``3 * num_mels`` (published: 180).
        out_channels: MossFormer width (published: 512).
        out_channels_final: mask bins, ``fft_len // 2 + 1`` (published: 961).
        num_blocks, norm, num_spks, skip_around_intra, use_global_pos_enc: as
            published (the mask net predicts ``num_spks`` masks; the first is used).
        max_length: accepted for compatibility (unused).
        win_len, win_inc, fft_len: STFT and feature framing in samples (1920, 384, 1920).
        num_mels: mel bands (60).
        input_scale: the waveform is multiplied by this before features and STFT (32768).
        dither: Kaldi fbank dither (0: deterministic; the published pipeline used 1.0).
        causal: causal configuration of every block.
        sample_rate: 48000.

    ``forward(features [B, N, in_channels]) -> mask [B, N, out_channels_final]``;
    :meth:`enhance` is the waveform path ``[B, T] -> [B, T]``.
    """

    def __init__(self, in_channels: int = 180, out_channels: int = 512, out_channels_final: int = 961,
                 num_blocks: int = 24, norm: str = "ln", num_spks: int = 2,
                 skip_around_intra: bool = True, use_global_pos_enc: bool = True,
                 max_length: int = 20000, win_len: int = 1920, win_inc: int = 384, fft_len: int = 1920,
                 num_mels: int = 60, input_scale: float = 32768.0, dither: float = 0.0,
                 causal: bool = False, sample_rate: int = 48000):
        super().__init__()
        if in_channels != 3 * num_mels or out_channels_final != fft_len // 2 + 1:
            raise ValueError(f"need in_channels == 3 * num_mels ({3 * num_mels}) and "
                             f"out_channels_final == fft_len // 2 + 1 ({fft_len // 2 + 1})")
        #: constructor arguments, saved with pretrained weights
        self.config = dict(in_channels=in_channels, out_channels=out_channels,
                           out_channels_final=out_channels_final, num_blocks=num_blocks, norm=norm,
                           num_spks=num_spks, skip_around_intra=skip_around_intra,
                           use_global_pos_enc=use_global_pos_enc, max_length=max_length, win_len=win_len,
                           win_inc=win_inc, fft_len=fft_len, num_mels=num_mels, input_scale=input_scale,
                           dither=dither, causal=causal, sample_rate=sample_rate)
        self.sample_rate, self.causal = sample_rate, causal
        self.win_len, self.hop_length, self.fft_len = win_len, win_inc, fft_len
        self.num_mels, self.input_scale, self.dither = num_mels, input_scale, dither
        self.mossformer = MossFormerMaskNet(in_channels, out_channels, out_channels_final, num_blocks, norm,
                                            num_spks, skip_around_intra, use_global_pos_enc, causal,
                                            dilated_fsmn=False)
        self.register_buffer("window", torch.hamming_window(win_len, periodic=False), persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mossformer(features.transpose(1, 2))[:, 0].transpose(1, 2)

    def features(self, wav: torch.Tensor, dither: Optional[float] = None) -> torch.Tensor:
        """Network input for ``wav`` ``[B, T]`` in [-1, 1]: ``[B, N, in_channels]``."""
        return fbank_with_deltas(wav * self.input_scale, self.sample_rate, self.num_mels, self.win_len,
                                 self.hop_length, "hamming", self.dither if dither is None else dither)

    def enhance(self, wav: torch.Tensor) -> torch.Tensor:
        """Enhanced waveform ``[B, T]`` for ``wav`` ``[B, T]`` (clips shorter than one frame are zero-padded)."""
        length = wav.shape[-1]
        wav = F.pad(wav, (0, max(0, self.win_len - length)))
        mask = self(self.features(wav))
        spec = torch.stft(wav * self.input_scale, self.fft_len, self.hop_length, self.win_len, self.window,
                          center=False, return_complex=True)
        out = torch.istft(spec * mask.transpose(1, 2), self.fft_len, self.hop_length, self.win_len,
                          self.window, center=False)
        # samples after the last full frame are zeros, as with istft(length=T)
        return F.pad(out, (0, max(0, length - out.shape[-1])))[:, :length] / self.input_scale
