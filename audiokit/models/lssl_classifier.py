"""Streaming speech classifier built on Linear State-Space Layers (:class:`~audiokit.nn.lssl.LSSL`).

::

    wav [B, T] --front end--> [B, T', F] (--conv stem-->) --Linear--> [B, T', H]
        --> num_layers x LSSLBlock (each optionally followed by a causal average pool by a stride)
        --> LayerNorm --> running mean over time --> Linear --> logits [B, N, num_classes]

Front ends: ``"raw"`` feeds the waveform itself (``F = 1``, one frame per sample, the paper's
setting); ``"logmel"`` a causal log-mel spectrogram (:class:`~audiokit.audio.features.CausalLogMel`,
10 ms frames), optionally through a causal 2-D conv stem over (frame, mel band)
(:class:`~audiokit.nn.conv_stem.ConvStem`, ``stem_channels``: filters shared across the bands).  The input
projection is pointwise, and the raw model downsamples only *after*
LSSL layers (default: by 4 after the first block and by 4 after the second, so 16 kHz audio
gives 1000 frames per second and only the first block runs 16000 steps per second).

Everything is causal: the logits at frame ``n`` (the running class posterior) depend only on the
samples up to that frame's end, and :meth:`LSSLClassifier.step` (or calling the model under
:func:`~audiokit.nn.state.streaming`) yields, chunk by chunk, the frames of :meth:`frame_logits`.

Rate change (:meth:`LSSLClassifier.set_rate`): the raw model divides every LSSL step size ``dt``
by ``new_rate / trained_rate`` so that each sample stands for the same span of time as in
training.  This is meaningful because the only operations before the first LSSL are pointwise;
the average pools later cover ``stride`` samples, so at a lower rate they span proportionally
more time and the frame rate drops in the same ratio (1000 -> 500 frames per second at 8 kHz).
A strided convolution on the waveform would not be rate-invariant this way.  The log-mel model
keeps its frame durations and mel bands in seconds and Hz instead, so its LSSLs are unchanged.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..audio.features import CausalLogMel
from ..nn.conv_stem import ConvStem
from ..nn.gated import GatedLinearUnit
from ..nn.lssl import LSSL
from ..nn.pooling import CausalAvgPool, RunningMean
from ..nn.state import StreamingComposite, call_offline

FRONTENDS = ("raw", "logmel")
#: log-mel frame hop of the "logmel" front end (s)
LOGMEL_HOP_SECONDS = 0.010


class LSSLBlock(StreamingComposite):
    """Residual LSSL block, ``[B, T, H] -> [B, T, H]``::

        y = x + dropout(glu(gelu(lssl(layer_norm(x)))))

    The layer norm (per frame) and the gated linear unit (position-wise channel mixing,
    :class:`~audiokit.nn.gated.GatedLinearUnit`) keep no state; the LSSL streams.
    """

    causal = True

    def __init__(self, channels: int, state_size: int, measure: str, dt_min: float, dt_max: float,
                 dropout: float, trainable_A: bool = False):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.lssl = LSSL(channels, state_size, measure, dt_min, dt_max, trainable_A)
        self.mix = GatedLinearUnit(channels, channels)
        self.dropout = nn.Dropout(dropout)

    def _run(self, x: torch.Tensor, call) -> torch.Tensor:
        h = call("lssl", self.lssl, self.norm(x))
        return x + self.dropout(self.mix(F.gelu(h)))


def step_size_range(frame_rate: float, memory_seconds: Tuple[float, float]) -> Tuple[float, float]:
    """``(dt_min, dt_max)`` for an LSSL at ``frame_rate`` (Hz) whose memories span ``memory_seconds``
    (shortest, longest): a LegS memory lasts about ``1 / dt`` frames; ``dt`` stays at or below 1."""
    shortest, longest = memory_seconds
    dt_max = min(1.0, 1.0 / (frame_rate * shortest))
    return min(dt_max, 1.0 / (frame_rate * longest)), dt_max


class LSSLClassifier(StreamingComposite):
    """Causal LSSL classifier: ``forward(wav [B, T]) -> logits [B, num_classes]`` (the running
    posterior logits at the last complete frame); :meth:`frame_logits` gives every frame's.

    Args:
        num_classes: output classes.
        sample_rate: rate (Hz) of the input the model is trained on.
        labels: optional class names (``num_classes`` of them).
        frontend: ``"raw"`` (waveform samples) or ``"logmel"``.
        channels: ``H``, the width of every block.
        state_size: ``N``, the LSSL state size.
        num_layers: residual LSSL blocks.
        pool_strides: causal average pool after block ``i`` by ``pool_strides[i]`` (1: none);
            default ``(4, 4)`` for ``"raw"``, none for ``"logmel"``.
        measure: HiPPO measure of the LSSLs (``"legs"`` or ``"legt"``).
        memory_seconds: (shortest, longest) memory the LSSL step sizes start at (s).
        dropout: after each block's channel mixing.
        trainable_A: learn the LSSL state matrices.
        n_mels: mel bands of the ``"logmel"`` front end.
        pool_seconds: the running mean covers the last ``pool_seconds`` of frames (a sliding window, for
            spotting words in long streams); None: everything since the start.
        stem_channels: channels of each layer of a causal conv stem on the log-mel frames (``"logmel"`` only;
            each layer halves the mel axis); empty: none, the frames go straight to the input projection.

    ``config`` holds the constructor arguments, so a saved config rebuilds the model.

    Streaming: ``step(chunk [B, t], state) -> (logits [B, n, num_classes], state)`` gives the running
    posterior logits of the ``n`` frames the chunk completes (``n`` may be 0); under
    :func:`~audiokit.nn.state.streaming`, calling the model on a chunk does the same with the state kept
    inside.  Either way the frames equal those of :meth:`frame_logits` on the whole signal.
    """

    causal = True

    def __init__(self, num_classes: int = 12, sample_rate: int = 16000, labels: Optional[Sequence[str]] = None,
                 frontend: str = "raw", channels: int = 128, state_size: int = 64, num_layers: int = 6,
                 pool_strides: Optional[Sequence[int]] = None, measure: str = "legs",
                 memory_seconds: Tuple[float, float] = (0.002, 1.0), dropout: float = 0.1,
                 trainable_A: bool = False, n_mels: int = 40, pool_seconds: Optional[float] = None,
                 stem_channels: Sequence[int] = ()):
        super().__init__()
        if frontend not in FRONTENDS:
            raise ValueError(f"frontend must be one of {FRONTENDS}, got {frontend!r}")
        if labels is not None and len(labels) != num_classes:
            raise ValueError(f"{len(labels)} labels for {num_classes} classes")
        if pool_strides is None:
            pool_strides = (4, 4) if frontend == "raw" else ()
        if len(pool_strides) > num_layers or any(s < 1 for s in pool_strides):
            raise ValueError(f"pool_strides needs at most {num_layers} strides >= 1, got {pool_strides}")
        if stem_channels and frontend != "logmel":
            raise ValueError("a conv stem (stem_channels) needs the logmel front end")
        self.config = dict(num_classes=num_classes, sample_rate=sample_rate, labels=labels and list(labels),
                           frontend=frontend, channels=channels, state_size=state_size, num_layers=num_layers,
                           pool_strides=list(pool_strides), measure=measure, memory_seconds=list(memory_seconds),
                           dropout=dropout, trainable_A=trainable_A, n_mels=n_mels, pool_seconds=pool_seconds,
                           stem_channels=list(stem_channels))
        self.num_classes, self.sample_rate, self.labels = num_classes, sample_rate, self.config["labels"]
        if frontend == "logmel":
            self.logmel: Optional[CausalLogMel] = CausalLogMel(sample_rate, n_mels, hop_seconds=LOGMEL_HOP_SECONDS)
            frame_rate, features = 1 / LOGMEL_HOP_SECONDS, n_mels
        else:
            self.logmel, frame_rate, features = None, float(sample_rate), 1
        self.stem = ConvStem(features, stem_channels) if stem_channels else None
        if self.stem is not None:
            features = self.stem.out_features
        self.input_proj = nn.Linear(features, channels)
        layers = []
        for i in range(num_layers):
            layers.append(LSSLBlock(channels, state_size, measure, *step_size_range(frame_rate, memory_seconds),
                                    dropout, trainable_A))
            stride = pool_strides[i] if i < len(pool_strides) else 1
            if stride > 1:
                layers.append(CausalAvgPool(stride))
                frame_rate /= stride
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(channels)
        self.running_mean = RunningMean(None if pool_seconds is None else max(1, round(pool_seconds * frame_rate)))
        self.head = nn.Linear(channels, num_classes)

    @property
    def frame_samples(self) -> int:
        """Input samples per output frame (at the current rate)."""
        strides = math.prod(layer.stride for layer in self.layers if isinstance(layer, CausalAvgPool))
        return strides * (self.logmel.hop_length if self.logmel is not None else 1)

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency (samples): a posterior frame is out once its last input sample is in, so one
        frame; the pooling window (``pool_seconds``) is how much past it averages, not a delay."""
        return self.frame_samples

    def _run(self, wav: torch.Tensor, call, feature_augment: Optional[Callable] = None) -> torch.Tensor:
        x = call("logmel", self.logmel, wav) if self.logmel is not None else wav.unsqueeze(-1)
        if feature_augment is not None:  # training only, e.g. SpecAugment masks on [B, N, features]
            x = feature_augment(x)
        if self.stem is not None:
            x = call("stem", self.stem, x)
        x = self.input_proj(x)
        for i, layer in enumerate(self.layers):
            x = call(f"layers.{i}", layer, x)
        return self.head(call("running_mean", self.running_mean, self.norm(x)))

    def frame_logits(self, wav: torch.Tensor, feature_augment: Optional[Callable] = None) -> torch.Tensor:
        """Running posterior logits of every complete frame: ``wav [B, T] -> [B, T // frame_samples, num_classes]``.
        ``feature_augment`` (training) maps the front end's features ``[B, N, features]`` to the same shape."""
        return self._run(wav, call_offline, feature_augment)

    def forward(self, wav: torch.Tensor, lengths: Optional[torch.Tensor] = None,
                feature_augment: Optional[Callable] = None) -> torch.Tensor:
        """Class logits ``[B, num_classes]`` of ``wav [B, T]`` (at least ``frame_samples`` samples) at its last
        complete frame, or, with ``lengths [B]`` (samples) for a right-padded batch, at each item's own last
        complete frame (the model is causal: the padding after it changes nothing). ``feature_augment``: see
        :meth:`frame_logits`."""
        if wav.shape[-1] < self.frame_samples:
            raise ValueError(f"need at least {self.frame_samples} samples for one frame, got {wav.shape[-1]}")
        frames = self.frame_logits(wav, feature_augment)
        if lengths is None:
            return frames[:, -1]
        last = (lengths.to(frames.device) // self.frame_samples - 1).clamp(0, frames.shape[1] - 1)
        return frames[torch.arange(frames.shape[0], device=frames.device), last]

    def set_rate(self, sample_rate: int) -> None:
        """Run on audio at ``sample_rate`` (Hz) without retraining (see the module docstring)."""
        if self.logmel is not None:
            self.logmel.set_rate(sample_rate)
        else:
            for module in self.modules():
                if isinstance(module, LSSL):
                    module.set_rate(sample_rate / self.config["sample_rate"])
        self.sample_rate = sample_rate
