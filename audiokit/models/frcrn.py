"""FRCRN: frequency-recurrent complex U-Nets for speech enhancement.

Two cascaded complex U-Nets estimate a complex ratio mask (cIRM) on a
convolutional STFT (Zhao et al., "FRCRN: Boosting feature representation
using frequency recurrence for single-channel speech enhancement", 2022).
Inside every encoder and decoder stage a complex FSMN runs along frequency
(the "frequency recurrence"); two stacked complex FSMNs run along time at the
bottleneck; complex squeeze-excite gates the skip connections.

``FRCRN()`` with default arguments is the published FRCRN_SE_16K topology
(640/320 STFT at 16 kHz, 128 channels, 7 encoder and 7 decoder stages).
``causal=True`` gives the streaming variant: encoder and decoder
convolutions look at past frames only and squeeze-excite pools a running
mean; its algorithmic latency is one STFT window.
``level_dbfs`` (off by default) adds a causal input-level normalisation: the
mask is estimated from the spectrum brought to that running level
(:class:`~audiokit.nn.level.LevelGain`) and applied to the spectrum as it is,
so the output keeps the input's level.
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Tuple

import torch
from torch import nn

from ..audio.stft import ConvISTFT, ConvSTFT
from ..nn.complex import (
    ComplexBatchNorm2d,
    ComplexConv2d,
    ComplexConvTranspose2d,
    ComplexFSMN,
    ComplexSqueezeExcite,
    channel_affine,
    complex_mul,
)
from ..nn.complex_frame import FrameConv, FrameFSMN, FrameSqueezeExcite, FrameTransposedConv, channel_order, dims
from ..nn.level import LevelGain
from ..nn.state import State, StreamingModule


def frame_power(spec: torch.Tensor, kernel_energy: torch.Tensor) -> torch.Tensor:
    """Mean square of the samples under each frame, ``[B, *, N] -> [B, N]``, from a spectrum whose middle
    dimensions hold the real and imaginary bins (exact in expectation for white noise: the spectrum's energy
    over ``kernel_energy``, the analysis kernels' energy)."""
    return spec.pow(2).flatten(1, -2).sum(1) / kernel_energy


class FRCRNOutput(NamedTuple):
    """``spec`` enhanced spectrum ``[B, 2F, N]``; ``wav`` ``[B, (N-1)*hop + win]``; ``mask`` ``[B, 2F, N]``."""
    spec: torch.Tensor
    wav: torch.Tensor
    mask: torch.Tensor


def encoder_freq_sizes(freq_bins: int) -> List[Tuple[int, int]]:
    """``(kernel, output size)`` of each stride-2 encoder stage along frequency, down to 1 bin.

    Kernel 5 while at least 5 bins remain, then a kernel spanning the rest,
    which reproduces the published 321 -> 159 -> 78 -> 37 -> 17 -> 7 -> 2 -> 1.
    """
    stages, size = [], freq_bins
    while size > 1:
        kernel = 5 if size >= 5 else size
        size = (size - kernel) // 2 + 1
        stages.append((kernel, size))
    return stages


class Stage(nn.Module):
    """Complex (transposed) convolution, complex batch norm, leaky ReLU: ``[B, 2Cin, F, T] -> [B, 2Cout, F', T]``."""

    def __init__(self, conv: nn.Module, channels: int, conv_name: str):
        super().__init__()
        self.add_module(conv_name, conv)
        self._conv_name = conv_name
        self.bn = ComplexBatchNorm2d(channels)
        self.relu = nn.LeakyReLU(inplace=True)

    def forward(self, x) -> torch.Tensor:
        """``x``: a map, or (decoders) a list of maps taken as their :func:`complex_cat`."""
        conv = getattr(self, self._conv_name)
        if self.training or conv.is_streaming:  # the fused path below is offline only
            return self.relu(self.bn(conv(x)))
        scale, shift = self.bn.affine(conv.complex_bias())  # bias and batch norm in one pass
        return self.relu(channel_affine(conv.unbiased(x), scale, shift))


class ComplexUNet(nn.Module):
    """Complex U-Net with frequency FSMNs: ``[B, 2, F, T] -> [B, 2, F, T]`` (mask logits).

    Args:
        freq_bins: ``F``.
        channels: complex channels of every stage.
        fsmn_hidden, fsmn_order: width and span of the FSMN memories.
        se_reduction: squeeze-excite bottleneck ratio.
        causal: past frames only (streamable).
        reference_layout: also build the stages the published model registers
            but never uses, so its checkpoints load with every key accounted for.
    """

    def __init__(self, freq_bins: int, channels: int = 128, fsmn_hidden: int = 128,
                 fsmn_order: int = 20, se_reduction: int = 8, causal: bool = False,
                 reference_layout: bool = False):
        super().__init__()
        stages = encoder_freq_sizes(freq_bins)
        sizes = [freq_bins] + [size for _, size in stages]
        depth = self.depth = len(stages)
        enc_time_pad = (1, 0) if causal else (1, 1)
        dec_time_crop = (0, 1) if causal else (1, 1)

        def freq_fsmn(used: bool) -> nn.Module:
            if used or reference_layout:
                return ComplexFSMN(channels, fsmn_hidden, fsmn_order, num_layers=1, axis="freq")
            return nn.Identity()

        def squeeze_excite(used: bool) -> nn.Module:
            if used or reference_layout:
                return ComplexSqueezeExcite(channels, se_reduction, causal)
            return nn.Identity()

        self.encoders = nn.ModuleList(
            Stage(ComplexConv2d(1 if i == 0 else channels, channels, (kernel, 2), (2, 1),
                                time_padding=enc_time_pad), channels, "conv")
            for i, (kernel, _) in enumerate(stages))
        self.fsmn_enc = nn.ModuleList(freq_fsmn(i > 0) for i in range(depth))
        self.se_layers_enc = nn.ModuleList(squeeze_excite(True) for _ in range(depth))
        self.fsmn = ComplexFSMN(channels * sizes[-1], fsmn_hidden, fsmn_order, num_layers=2, axis="time")
        decoders = []
        for i in range(depth):
            f_in, f_out = sizes[depth - i], sizes[depth - 1 - i]
            kernel = f_out - 2 * (f_in - 1)
            c_out = 1 if i == depth - 1 else channels
            tconv = ComplexConvTranspose2d(channels if i == 0 else 2 * channels, c_out, (kernel, 2), (2, 1),
                                           time_crop=dec_time_crop)
            decoders.append(Stage(tconv, c_out, "transconv"))
        self.decoders = nn.ModuleList(decoders)
        self.fsmn_dec = nn.ModuleList(freq_fsmn(i < depth - 1) for i in range(depth))
        self.se_layers_dec = nn.ModuleList(squeeze_excite(i < depth - 2) for i in range(depth - 1))
        self.linear = ComplexConv2d(1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, encoder in enumerate(self.encoders):
            if i > 0:
                x = self.fsmn_enc[i](x)
            x = encoder(x)
            skips.append(self.se_layers_enc[i](x))
        p = self.fsmn(x)
        for i, decoder in enumerate(self.decoders):
            p = decoder(p)
            if i == self.depth - 1:
                break
            p = self.fsmn_dec[i](p)
            if i < self.depth - 2:
                p = self.se_layers_dec[i](p)
            p = [p, skips[self.depth - 2 - i]]
        return self.linear(p)


class FRCRN(StreamingModule):
    """FRCRN speech enhancement, waveform in and out.

    Args:
        win_len, win_inc, fft_len, win_type: STFT in samples (published: 640, 320, 640, hann).
        channels, fsmn_hidden, fsmn_order, se_reduction: network widths (published: 128, 128, 20, 8).
        causal: streaming variant (latency: ``win_len`` samples).
        reference_layout: keep the unused stages of the published checkpoints.
        level_dbfs, level_seconds: when ``level_dbfs`` is given, the network sees each frame's spectrum
            scaled to that running level (dBFS, time constant ``level_seconds``, gains within +-30 dB); the
            mask applies to the unscaled spectrum. None (default): the network sees the input as it is.

    ``forward(wav [B, T]) -> FRCRNOutput``: frames are not centred and the
    output has ``(N - 1) * win_inc + win_len`` samples, as in the published
    model.  :meth:`enhance` returns a waveform aligned with its input.
    """

    def __init__(self, win_len: int = 640, win_inc: int = 320, fft_len: int = 640,
                 win_type: str = "hann", channels: int = 128, fsmn_hidden: int = 128,
                 fsmn_order: int = 20, se_reduction: int = 8, causal: bool = False,
                 reference_layout: bool = False, sample_rate: int = 16000,
                 level_dbfs: Optional[float] = None, level_seconds: float = 1.0):
        super().__init__()
        #: constructor arguments, saved with pretrained weights
        self.config = dict(win_len=win_len, win_inc=win_inc, fft_len=fft_len, win_type=win_type,
                           channels=channels, fsmn_hidden=fsmn_hidden, fsmn_order=fsmn_order,
                           se_reduction=se_reduction, causal=causal, reference_layout=reference_layout,
                           sample_rate=sample_rate)
        if level_dbfs is not None:
            self.config.update(level_dbfs=level_dbfs, level_seconds=level_seconds)
        self.sample_rate, self.causal = sample_rate, causal
        self.win_len, self.hop_length, self.fft_len = win_len, win_inc, fft_len
        self.freq_bins = fft_len // 2 + 1
        self.stft = ConvSTFT(win_len, win_inc, fft_len, win_type)
        self.istft = ConvISTFT(win_len, win_inc, fft_len, win_type)
        unet_args = dict(freq_bins=self.freq_bins, channels=channels, fsmn_hidden=fsmn_hidden,
                         fsmn_order=fsmn_order, se_reduction=se_reduction, causal=causal,
                         reference_layout=reference_layout)
        self.unet = ComplexUNet(**unet_args)
        self.unet2 = ComplexUNet(**unet_args)
        self.level = (None if level_dbfs is None
                      else LevelGain(level_dbfs, level_seconds, sample_rate / win_inc))
        self._frame_step_cache: dict = {}

    @property
    def stream_lead(self) -> int:
        """Zero samples before the signal so that its first sample is covered by full frames."""
        return self.win_len - self.hop_length

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency of the causal variant: one analysis window."""
        return self.win_len

    def estimate_mask(self, spec: torch.Tensor) -> torch.Tensor:
        """Complex ratio mask ``[B, 2F, N]`` for a noisy spectrum ``[B, 2F, N]``."""
        b, _, n = spec.shape
        logits1 = self.unet(spec.view(b, 2, self.freq_bins, n))
        logits2 = self.unet2(logits1)
        return (torch.tanh(logits1) + torch.tanh(logits2)).view(b, -1, n)

    def _enhance_spec(self, spec: torch.Tensor, level_state: Optional[State] = None
                      ) -> Tuple[torch.Tensor, torch.Tensor, Optional[State]]:
        """Enhanced spectrum and mask ``[B, 2F, N]`` of ``spec``, and the level normaliser's next state."""
        scaled = spec
        if self.level is not None:
            with torch.no_grad():
                gain, level_state = self.level.step(frame_power(spec, self.stft.weight.pow(2).sum()), level_state)
            scaled = spec * gain[:, None, :]
        mask = self.estimate_mask(scaled)
        b, _, n = spec.shape
        enhanced = complex_mul(spec.view(b, 2, -1, n), mask.view(b, 2, -1, n)).view(b, -1, n)
        return enhanced, mask, level_state

    def forward(self, wav: torch.Tensor) -> FRCRNOutput:
        enhanced, mask, _ = self._enhance_spec(self.stft(wav))
        return FRCRNOutput(enhanced, self.istft(enhanced), mask)

    def enhance(self, wav: torch.Tensor) -> torch.Tensor:
        """Whole-signal enhancement aligned with the input: ``[B, T] -> [B, T]``.

        Pads ``win_len - win_inc`` zeros in front and completes the last hop
        with zeros, so every sample is covered by full frames; the streaming
        runtime reproduces this output chunk by chunk for the causal variant.
        """
        length = wav.shape[-1]
        tail = (-length) % self.hop_length
        padded = torch.nn.functional.pad(wav, (self.stream_lead, tail))
        out = self.forward(padded).wav
        return out[:, self.stream_lead:self.stream_lead + length]

    def step(self, wav: torch.Tensor, state: Optional[State]) -> Tuple[torch.Tensor, State]:
        """Stream ``[B, k * win_inc]`` samples in, the same number of output samples out.

        Use under :func:`audiokit.nn.state.streaming`; output sample ``i`` of the
        stream is sample ``i`` of :meth:`enhance` on the zero-led signal
        (``stream_lead`` samples early).
        """
        if not self.causal:
            raise RuntimeError("the non-causal FRCRN looks at the whole clip; stream it in windows")
        state = state or {}
        spec, stft_state = self.stft.step(wav, state.get("stft"))
        enhanced, _, level_state = self._enhance_spec(spec, state.get("level"))
        out, istft_state = self.istft.step(enhanced, state.get("istft"))
        if level_state is None:
            return out, {"stft": stft_state, "istft": istft_state}
        return out, {"stft": stft_state, "istft": istft_state, "level": level_state}

    def frame_stepper(self) -> "FRCRNFrameStep":
        """Inference-only frame-by-frame copy of this causal model, for :class:`CausalStream`.

        Built once and reused while no parameter or buffer changes (the cache
        is keyed on their identities and in-place versions).
        """
        if not self.causal:
            raise RuntimeError("the non-causal FRCRN looks at the whole clip; stream it in windows")
        key = tuple((id(t), t._version) for t in (*self.parameters(), *self.buffers()))
        if self._frame_step_cache.get("key") != key:
            self._frame_step_cache = {"key": key, "step": FRCRNFrameStep(self).eval()}
        return self._frame_step_cache["step"]

    def flush(self, state: State) -> torch.Tensor:
        """The last ``win_len - win_inc`` output samples held in a stream's ``state``, ``[B, win_len - win_inc]``."""
        return self.istft.flush(state["istft"])


class FrameUNet(nn.Module):
    """A causal :class:`ComplexUNet` on one frame: ``[B, 2, F] -> [B, 2, F]`` (see :mod:`audiokit.nn.complex_frame`)."""

    def __init__(self, unet: ComplexUNet, freq_bins: int):
        super().__init__()
        depth = self.depth = unet.depth
        self.sizes = [freq_bins] + [size for _, size in encoder_freq_sizes(freq_bins)]
        self.encoders = nn.ModuleList(FrameConv(s.conv, s.bn, leaky=True) for s in unet.encoders)
        self.fsmn_enc = nn.ModuleList(FrameFSMN(unet.fsmn_enc[i]) for i in range(1, depth))
        self.se_enc = nn.ModuleList(FrameSqueezeExcite(se, self.sizes[i + 1])
                                    for i, se in enumerate(unet.se_layers_enc))
        self.fsmn = FrameFSMN(unet.fsmn)
        channels = unet.encoders[-1].conv.conv_re.out_channels
        skip_order = channel_order([channels, channels])
        self.decoders = nn.ModuleList(
            FrameTransposedConv(s.transconv, s.bn, leaky=True, input_order=None if i == 0 else skip_order)
            for i, s in enumerate(unet.decoders))
        self.fsmn_dec = nn.ModuleList(FrameFSMN(unet.fsmn_dec[i]) for i in range(depth - 1))
        self.se_dec = nn.ModuleList(FrameSqueezeExcite(unet.se_layers_dec[i], self.sizes[depth - 1 - i])
                                    for i in range(depth - 2))
        self.linear = FrameConv(unet.linear)

    def initial_state(self, batch: int) -> List[torch.Tensor]:
        """Zero history, in the order :meth:`forward` reads it."""
        state = []
        for i, encoder in enumerate(self.encoders):
            state += [encoder.initial_state(batch, self.sizes[i]), self.se_enc[i].initial_state(batch)]
        state += self.fsmn.initial_state(batch, self.sizes[-1])
        for i, decoder in enumerate(self.decoders):
            state.append(decoder.initial_state(batch, self.sizes[self.depth - i]))
            if i < self.depth - 2:
                state.append(self.se_dec[i].initial_state(batch))
        return state

    def forward(self, x: torch.Tensor, state: List[torch.Tensor],
                inv_frames: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        new: List[torch.Tensor] = []
        skips: List[torch.Tensor] = []
        for i, encoder in enumerate(self.encoders):
            if i > 0:
                x, _ = self.fsmn_enc[i - 1](x, [])
            x, history = encoder(x, state[len(new)])
            new.append(history)
            skip, total = self.se_enc[i](x, state[len(new)], inv_frames)
            new.append(total)
            skips.append(skip)
        layers = self.fsmn.num_layers
        p, histories = self.fsmn(x, state[len(new):len(new) + layers])
        new += histories
        for i, decoder in enumerate(self.decoders):
            if i > 0:
                p = torch.cat([p, skips[self.depth - 1 - i]], 1)
            p, history = decoder(p, state[len(new)])
            new.append(history)
            if i == self.depth - 1:
                break
            p, _ = self.fsmn_dec[i](p, [])
            if i < self.depth - 2:
                p, total = self.se_dec[i](p, state[len(new)], inv_frames)
                new.append(total)
        p, _ = self.linear(p, p)
        return p, new


class FRCRNFrameStep(nn.Module):
    """Frozen inference copy of a causal :class:`FRCRN` that runs one STFT frame per call.

    ``forward(wav [B, hop], state) -> (out [B, hop], state)`` with ``state``
    (a list of tensors) from :meth:`initial_state`; the outputs equal
    :meth:`FRCRN.step` (float rounding aside).  :meth:`flush` returns the ``win_len - hop`` samples still held.
    """

    def __init__(self, model: FRCRN):
        super().__init__()
        if model.training:
            raise RuntimeError("frame stepping is for inference: call model.eval() first")
        self.win_len, self.hop, self.freq_bins = model.win_len, model.hop_length, model.freq_bins
        f, win = self.freq_bins, self.win_len
        with torch.no_grad():  # spectra as [B, 2, F]: real parts, then imaginary parts
            self.register_buffer("analysis", model.stft.weight[:, 0].t().contiguous())  # [win, 2F]
            self.register_buffer("synthesis", model.istft.weight[:, 0].contiguous())  # [2F, win]
            self.register_buffer("window_sq", model.istft.window_sq.view(1, win).clone())
            self.register_buffer("mask_sign", torch.tensor([-1.0, 1.0]).view(1, 2, 1))
            self.use_fft = self._fft_equivalent(model.fft_len)
        # exported graphs keep the dense products unless the length is a power of two: ONNX Runtime's
        # DFT of other lengths is far less exact (1e-5 against 1e-7 at 320)
        self.export_fft = self.use_fft and self.win_len & (self.win_len - 1) == 0
        self.unet, self.unet2 = FrameUNet(model.unet, f), FrameUNet(model.unet2, f)
        self.level = model.level
        if self.level is not None:
            self.register_buffer("kernel_energy", model.stft.weight.detach().pow(2).sum())

    def _fft_equivalent(self, fft_len: int) -> bool:
        """Whether the STFT matrices are a windowed real FFT and its windowed inverse (then
        :meth:`forward` runs FFTs, much cheaper than the two dense ``[win, 2F]`` products).

        Sets ``analysis_window`` and ``synthesis_window`` ``[win]`` when they are."""
        win = self.win_len
        if fft_len != win:
            return False
        analysis_window = self.analysis[:, 0].clone()  # bin 0, real part: the window itself
        analysis = torch.view_as_real(torch.fft.rfft(torch.diag(analysis_window), n=fft_len))
        analysis = analysis.transpose(1, 2).reshape(win, -1)  # columns (part, bin)
        # every (part, bin) of the spectrum as a unit complex input
        units = torch.view_as_complex(torch.eye(2 * self.freq_bins).view(-1, 2, self.freq_bins).transpose(1, 2)
                                      .contiguous())
        inverse = torch.fft.irfft(units, n=fft_len)  # [2F, win]; row 0 is the constant 1 / fft_len
        synthesis_window = self.synthesis[0] / inverse[0]
        synthesis = inverse * synthesis_window
        scale_a, scale_s = self.analysis.abs().max(), self.synthesis.abs().max()
        ok = bool((analysis - self.analysis).abs().max() <= 1e-5 * scale_a
                  and (synthesis - self.synthesis).abs().max() <= 1e-5 * scale_s)
        if ok:
            self.register_buffer("analysis_window", analysis_window.view(1, win))
            self.register_buffer("synthesis_window", synthesis_window.view(1, win).contiguous())
        return ok

    def initial_state(self, batch: int) -> List[torch.Tensor]:
        """Frames so far, analysis history, synthesis overlap (signal, window norm), the running level's
        weighted power sum ``[B, 1]`` (with ``level_dbfs`` only), then the U-Nets'."""
        tail = self.win_len - self.hop
        zeros = self.analysis.new_zeros
        level = [] if self.level is None else [zeros(batch, 1)]
        return ([zeros(()), zeros(batch, tail), zeros(batch, tail), zeros(1, tail)] + level
                + self.unet.initial_state(batch) + self.unet2.initial_state(batch))

    def forward(self, wav: torch.Tensor, state: List[torch.Tensor]) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        b, tail = dims(wav)[0], self.win_len - self.hop
        frames = state[0] + 1
        full = torch.cat([state[1], wav], -1)
        use_fft = self.export_fft if torch.compiler.is_exporting() else self.use_fft
        if use_fft:
            spec = torch.view_as_real(torch.fft.rfft(full * self.analysis_window)).transpose(1, 2)
        else:
            spec = torch.mm(full, self.analysis).view(b, 2, self.freq_bins)
        first = 4 if self.level is None else 5  # where the U-Nets' states begin
        scaled, level = spec, state[4:first]
        if self.level is not None:
            power = frame_power(spec.unsqueeze(-1), self.kernel_energy)  # [B, 1]
            gain, total = self.level.frame(power, state[4], frames)
            scaled, level = spec * gain.unsqueeze(2), [total]
        split = first + (len(state) - first) // 2
        logits1, state1 = self.unet(scaled, state[first:split], 1 / frames)
        logits2, state2 = self.unet2(logits1, state[split:], 1 / frames)
        mask = torch.tanh(logits1) + torch.tanh(logits2)
        # complex product: (s_re m_re - s_im m_im, s_im m_re + s_re m_im)
        enhanced = spec * mask[:, :1] + spec.flip(1) * (mask[:, 1:] * self.mask_sign)
        if use_fft:
            spectrum = torch.complex(enhanced[:, 0], enhanced[:, 1])
            frame = torch.fft.irfft(spectrum, n=self.win_len) * self.synthesis_window
        else:
            frame = torch.mm(enhanced.reshape(b, -1), self.synthesis)  # [B, win]
        wav_sum = torch.cat([frame[:, :tail] + state[2], frame[:, tail:]], -1)
        norm = torch.cat([self.window_sq[:, :tail] + state[3], self.window_sq[:, tail:]], -1)
        out = wav_sum[:, :self.hop] / (norm[:, :self.hop] + 1e-8)
        carried = [frames, full[:, dims(full)[-1] - tail:], wav_sum[:, self.hop:], norm[:, self.hop:]]
        return out, carried + level + state1 + state2

    @staticmethod
    def flush(state: List[torch.Tensor]) -> torch.Tensor:
        """The samples still held by the stream, ``[B, win_len - hop]``."""
        return state[2] / (state[3] + 1e-8)
