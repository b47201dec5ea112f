"""The one block pipeline: blocks at an input rate through a processor at the model rate, for files and live audio.

A *processor* has ``feed(x [C, n] at the model rate) -> [S, C, m, *shape]`` and ``flush()`` (the rest), in
the layout of its :class:`~audiokit.streaming.outputs.OutputSpec`: S audio outputs (1 enhanced signal, S
speakers) or one stream of frames. A live processor also has ``latency_samples`` (and ``hop`` when it works in
hops). An enhancement processor may have ``input_share``: that share of the input is mixed back into its
output (an attenuation limit, :func:`kept_input_share`). :class:`ChannelStreams` makes one from any model the
streaming runtime runs.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable, Optional

import numpy as np
import torch

from ..audio.dc import DCBlocker
from ..audio.resample import StreamResampler, held_samples
from ..errors import ModelError
from .outputs import OutputSpec
from .runtime import open_stream


class BlockPipeline:
    """``[C, n]`` blocks at ``rate`` -> DC removed -> resampled to ``model_rate`` -> a processor ->
    ``[S, C, m, *shape]`` blocks.

    A DC offset is inaudible, but it wrecks an enhancer's output (and is not wanted back) and makes a dance
    generator, whose spectra start at 0 Hz, dance to another song. With ``dc_free`` (the default for audio
    outputs) the model never sees it: a causal DC blocker (:class:`~audiokit.audio.dc.DCBlocker`, a 10 Hz
    one-pole high-pass) runs on the input before it is resampled (so that no offset step reaches the
    resampler); being causal, it gives files, arrays and live audio, in blocks of any size, the same result.
    Without it (the classifiers: trained on the input as it is, little moved by an offset) the model gets the
    input as it is.

    Audio outputs are resampled back to ``rate`` and, over the whole stream, have exactly as many samples as
    the input (trimmed, or zero-padded at the end by :meth:`flush`). A processor with an ``input_share`` ``a``
    gets ``(1 - a) y + a x``: ``y`` its output, ``x`` the (DC-free) input at ``rate`` and full band, sample for
    sample (live: as delayed as ``y``). Frames are handed on as the processor
    emits them, never resampled.

    Live use (``block`` given, one channel): :meth:`process` takes ``[B]`` blocks and returns ``[S, B]`` audio,
    the input processed and delayed by exactly ``latency`` samples (resampling both ways plus the processor's
    latency and hop buffering, rounded up: the output starts with that many zeros, so every block comes out
    whole), or the ``[1, n, *shape]`` frames ready. ``open_processor()`` is called again by :meth:`reset`.
    """

    def __init__(self, open_processor: Callable[[], object], rate: int, model_rate: int, output: OutputSpec,
                 channels: int = 1, block: Optional[int] = None, dc_free: Optional[bool] = None):
        self.open_processor, self.rate, self.model_rate = open_processor, rate, model_rate
        self.dc_free = output.is_audio if dc_free is None else dc_free
        self.output, self.channels, self.block = output, channels, block
        self.starved = 0  # live audio blocks that came out short (would mean the latency bound is wrong)
        self.latency = 0
        self._open()
        if block is not None:
            self.latency = self._live_latency()
            self._held, self._dry = self._primed(), self._primed_input()

    def _primed(self) -> Optional[torch.Tensor]:
        """The audio output's first ``latency`` samples: zeros (live audio), or nothing."""
        live_audio = self.latency and self.output.is_audio
        return torch.zeros(self.output.count, self.channels, self.latency) if live_audio else None

    def _primed_input(self) -> torch.Tensor:
        """The input to mix into the output's next samples, ``[C, t]``: ``latency`` zeros (live audio), or none."""
        return torch.zeros(self.channels, self.latency if self.output.is_audio else 0)

    def _open(self) -> None:
        self.processor = self.open_processor()
        self._down = StreamResampler(self.rate, self.model_rate, self.channels)
        self._dc = DCBlocker(self.rate, self.channels) if self.dc_free else (lambda x: x)
        self._up: Optional[StreamResampler] = None  # audio only, made for the first output's [S, C]
        self._samples_in = self._samples_out = 0
        self._held = self._primed()  # audio resampled back beyond the input so far, [S, C, t]
        self.input_share = float(getattr(self.processor, "input_share", 0.0))
        self._dry = self._primed_input()

    def _live_latency(self) -> int:
        """Device samples from an input sample to its output: an upper bound, rounded up."""
        stream = self.processor.latency_samples + getattr(self.processor, "hop", 1) - 1
        back = held_samples(self.model_rate, self.rate) if self.output.is_audio and self.rate != self.model_rate else 0
        return math.ceil(self._down.held + (stream + back) * self.rate / self.model_rate)

    def reset(self) -> None:
        """Start over (after a gap in the input): fresh processor and resamplers, output delay primed again."""
        self._open()

    def _deliver(self, out, final: bool) -> torch.Tensor:
        out = self.output.check_block(out)
        if not self.output.is_audio:
            return out
        if out.shape[-1] or final:  # (an empty block may not know the number of outputs yet)
            if self._up is None:
                self._outputs = out.shape[:2] if self._held is None else self._held.shape[:2]
                self._up = StreamResampler(self.model_rate, self.rate, self._outputs[0] * self._outputs[1])
            if out.shape[:2] != self._outputs:
                raise ModelError(f"the number of outputs changed from {self._outputs[0]} to {out.shape[0]}")
            back = self._up.feed(out.reshape(self._up.channels, out.shape[-1]))
            back = torch.cat([back, self._up.flush()], -1) if final else back
            back = back.reshape(*self._outputs, -1)
            self._held = back if self._held is None else torch.cat([self._held, back], dim=-1)
        if self._held is None:
            return out
        out, ready = self._held, self._samples_in - self._samples_out
        if final:
            out = torch.nn.functional.pad(out, (0, max(0, ready - out.shape[-1])))
        self._held = out[..., ready:]
        self._samples_out += min(ready, out.shape[-1])
        return out[..., :ready]

    def feed(self, x: torch.Tensor) -> torch.Tensor:
        """``[C, n]`` input samples at ``rate``; the output ready so far, ``[S, C, m, *shape]``."""
        self._samples_in += x.shape[-1]
        x = self._dc(x)
        if self.input_share:
            self._dry = torch.cat([self._dry, x.to(torch.float32)], dim=-1)
        return self._mix_input(self._deliver(self.processor.feed(self._down.feed(x)), final=False))

    def flush(self) -> torch.Tensor:
        """End of the input: the rest of the output."""
        parts = [self.processor.feed(self._down.flush()), self.processor.flush()]
        out = self._deliver(torch.cat([p for p in parts if p.shape[2]] or parts[-1:], dim=2), final=True)
        return self._mix_input(out)

    def _mix_input(self, out: torch.Tensor) -> torch.Tensor:
        """Audio ``out [S, C, m]`` with the processor's ``input_share`` of the input samples it stands for."""
        if not self.input_share:
            return out
        dry, self._dry = self._dry[:, :out.shape[-1]], self._dry[:, out.shape[-1]:]
        return (1 - self.input_share) * out + self.input_share * dry

    def process(self, block: np.ndarray) -> np.ndarray:
        """Live: ``[B]`` float samples in; ``[S, B]`` audio (the input ``latency`` samples ago, processed)
        or the ``[1, n, *shape]`` frames ready."""
        out = self.feed(torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32))[None])[:, 0]
        if self.output.is_audio and out.shape[-1] < self.block:  # cannot happen if latency is a true bound
            self.starved += 1
            out = torch.nn.functional.pad(out, (0, self.block - out.shape[-1]))
        return out.numpy()


def kept_input_share(atten_lim_db: Optional[float], option: str = "--atten-lim ") -> float:
    """The share of the input an enhancer keeps (a processor's ``input_share``) so that no noise is attenuated
    by more than ``atten_lim_db`` dB: ``10 ** (-dB / 20)``; 0 for None or infinity (no limit). ModelError, naming
    ``option``, unless the limit is a number of dB, at least 0."""
    if atten_lim_db is None:
        return 0.0
    number = isinstance(atten_lim_db, numbers.Real) and not isinstance(atten_lim_db, bool)
    if not (number and atten_lim_db >= 0):  # NaN too
        shown = f"{atten_lim_db:g}" if number else repr(atten_lim_db)
        raise ModelError(f"{option}{shown}: must be a number of dB, at least 0")
    return 10.0 ** (-float(atten_lim_db) / 20)


class ChannelStreams:
    """A processor running a model through the streaming runtime, one stream per channel, fed ``chunk``
    samples at a time (whole blocks when None): ``feed(x [C, n]) -> [1, C, m, *shape]`` float32 on the CPU.

    Exact for causal models; windowed (``window``/``overlap`` samples, runtime defaults when None) otherwise.
    ``output``: what the model emits (audio by default). ``frames``: causal models run on a frame engine (for
    chunks of milliseconds, live audio); False runs the model on the chunks themselves (files: large chunks).
    ``input_share``: for :class:`BlockPipeline`, the share of the input mixed back into the output.
    """

    def __init__(self, model: torch.nn.Module, channels: int, chunk: Optional[int] = None,
                 window: Optional[int] = None, overlap: Optional[int] = None,
                 output: OutputSpec = OutputSpec.audio(1), offline: Optional[Callable] = None, frames: bool = True,
                 input_share: float = 0.0):
        self.chunk, self.output, self.input_share = chunk, output, input_share
        self.device = next(model.parameters(), torch.zeros(0)).device
        self.streams = [open_stream(model, 1, window, overlap, output, offline, frames) for _ in range(channels)]
        self.latency_samples = self.streams[0].latency_samples
        if hasattr(self.streams[0], "hop"):
            self.hop = self.streams[0].hop

    @property
    def backend(self) -> str:
        """The frame engine of causal streams (``CausalStream.backend``), ``"window"`` for windowed ones."""
        return getattr(self.streams[0], "backend", "window")

    def feed(self, x: torch.Tensor) -> torch.Tensor:
        if not x.shape[-1]:
            return self._stack([self._cat([]) for _ in self.streams])
        x = x.to(self.device, torch.float32)
        with torch.inference_mode():
            return self._stack([self._cat([stream.feed(piece) for piece in channel.split(self.chunk or len(channel))])
                                for stream, channel in zip(self.streams, x)])

    def flush(self) -> torch.Tensor:
        with torch.inference_mode():
            return self._stack([stream.flush() for stream in self.streams])

    def _cat(self, parts: list) -> torch.Tensor:
        """One channel's outputs joined along time (none for an empty block)."""
        return torch.cat(parts, dim=0) if parts else torch.zeros(0, *self.output.shape)

    def _stack(self, channels: list) -> torch.Tensor:
        """Per-channel outputs ``[t, *shape]`` as one ``[1, C, t, *shape]`` float32 CPU tensor."""
        return torch.stack([c.detach().to("cpu", torch.float32).reshape(-1, *self.output.shape)
                            for c in channels])[None]
