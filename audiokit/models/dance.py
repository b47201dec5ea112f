"""Dance generation from music: a CNN + LSTM audio encoder and an auto-conditioned LSTM pose decoder.

After Yalta et al., "Weakly Supervised Deep Recurrent Neural Networks for Basic Dance Step Generation"
(IJCNN 2019). Per motion frame (25 fps) the model reads a short causal log-power spectrum window of the
music (:func:`audiokit.audio.features.frame_log_power`: ``context`` STFT frames whose last one ends at the
end of the motion frame), passes it through 2-D convolutions (time x frequency within the window), then a
multi-layer LSTM (``encoder="lstm"``) or a stack of causal FSMN memory blocks (``encoder="fsmn"``, the
shared :class:`~audiokit.nn.fsmn.FSMN`) along the frames, and a linear layer to the **audio embedding**
``e_t``. The decoder, a multi-layer LSTM, takes ``e_t``, the previous pose and (optionally) a style
embedding and predicts the pose of frame ``t``. The style is one of the four dances (cha-cha, rumba, tango,
waltz), a fifth "any style" entry (``style=None``; trained by giving some windows that index), or ``"auto"``:
picked from the music, a style head on the audio embeddings giving per frame the softmax of the mean of its
logits over the frames heard so far, which weighs the four style embeddings (causal, so it streams too).

Pose representation: :mod:`audiokit.motion.poses` (:data:`POSE_DIM` = 72 numbers per frame: the joints relative
to the root, the root height and horizontal velocity). The network works on
these numbers **normalised** by the per-dimension mean and standard deviation of the training data
(:meth:`DanceGenerator.set_stats`, buffers saved with the weights); its spectra inputs are raw
``frame_log_power`` output and are normalised inside with the same kind of statistics.

Training (:meth:`DanceGenerator.forward`) is **auto-conditioned**: a ``teacher_mask`` says, per frame, whether
the decoder is fed the true previous pose or its own previous prediction. :meth:`generate` is the offline
generation; :meth:`step` the streaming one (one pose per spectrum frame, the state explicit), equal to
:meth:`generate`.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
import torch
from torch import nn

from audiokit.audio.features import frame_log_power
from audiokit.motion.dance_data import STYLES as DANCE_STYLES
from audiokit.motion.poses import POSE_DIM, ROOT_JOINTS, poses_from_positions, positions_from_poses  # noqa: F401
from audiokit.nn.fsmn import FSMN
from audiokit.nn.state import State, StreamingModule

STYLES = tuple(DANCE_STYLES.values())  # ("cha-cha", "rumba", "tango", "waltz"), style indices 0-3


class DanceGenerator(StreamingModule):
    """Music -> dance poses (see the module docstring).

    Args:
        sample_rate, fps: audio rate the spectra are computed at, motion frame rate.
        n_fft, hop_length, context: the spectrum window of each motion frame (``frame_log_power``).
        conv_channels: channels of the 2-D conv layers (3x3, stride 2 in time and frequency, ReLU).
        hidden: width of the audio encoder.
        encoder: "lstm" (the paper) or "fsmn" (causal FSMN blocks, ``fsmn_order`` taps of memory each).
        encoder_layers: LSTM layers or FSMN blocks.
        embedding_dim: size of the audio embedding (where the contrastive loss acts).
        decoder_hidden, decoder_layers: the pose LSTM.
        num_styles: dance styles (0: no style input); index ``num_styles`` means "any style".
        style_dim: size of the style embedding.
    """

    causal = True  #: a pose reads only the music heard up to its frame's end (so it streams, :meth:`step`)

    def __init__(self, sample_rate: int = 16000, fps: float = 25.0, n_fft: int = 256, hop_length: int = 160,
                 context: int = 8, conv_channels=(16, 32), hidden: int = 128, encoder: str = "lstm",
                 encoder_layers: int = 2, fsmn_order: int = 10, embedding_dim: int = 32, decoder_hidden: int = 256,
                 decoder_layers: int = 2, num_styles: int = 4, style_dim: int = 8):
        super().__init__()
        if encoder not in ("lstm", "fsmn"):
            raise ValueError(f"encoder must be 'lstm' or 'fsmn', not {encoder!r}")
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps < math.inf:
            raise ValueError(f"fps must be a positive number, not {fps!r}")
        if isinstance(sample_rate, (int, float)) and sample_rate > 0 and \
                abs(sample_rate / fps - round(sample_rate / fps)) > 1e-6:  # (other rates: the loader's rate check)
            raise ValueError(f"{fps:g} frames per second are not whole samples at {sample_rate} Hz")
        conv_channels = [int(c) for c in conv_channels]
        self.config = dict(sample_rate=sample_rate, fps=fps, n_fft=n_fft, hop_length=hop_length, context=context,
                           conv_channels=conv_channels, hidden=hidden, encoder=encoder,
                           encoder_layers=encoder_layers, fsmn_order=fsmn_order, embedding_dim=embedding_dim,
                           decoder_hidden=decoder_hidden, decoder_layers=decoder_layers, num_styles=num_styles,
                           style_dim=style_dim)
        self.sample_rate, self.fps, self.context = sample_rate, fps, context
        self.bins = n_fft // 2 + 1
        self.feature_dim = context * self.bins
        self.pose_dim = POSE_DIM
        self.num_styles = num_styles
        layers, channels, size = [], 1, [context, self.bins]
        for out in conv_channels:
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.ReLU()]
            channels, size = out, [(s - 1) // 2 + 1 for s in size]
        self.conv = nn.Sequential(*layers)
        self.conv_out = nn.Linear(channels * size[0] * size[1], hidden)
        self.encoder_kind = encoder
        if encoder == "lstm":
            self.encoder = nn.LSTM(hidden, hidden, encoder_layers, batch_first=True)
        else:
            self.encoder = nn.ModuleList(FSMN(hidden, hidden, hidden, fsmn_order) for _ in range(encoder_layers))
        self.embed = nn.Linear(hidden, embedding_dim)
        self.style = nn.Embedding(num_styles + 1, style_dim) if num_styles else None
        self.style_head = nn.Linear(embedding_dim, num_styles) if num_styles else None
        self.decoder = nn.LSTM(embedding_dim + POSE_DIM + (style_dim if num_styles else 0), decoder_hidden,
                               decoder_layers, batch_first=True)
        self.out = nn.Linear(decoder_hidden, POSE_DIM)
        self.register_buffer("pose_mean", torch.zeros(POSE_DIM))
        self.register_buffer("pose_std", torch.ones(POSE_DIM))
        self.register_buffer("spec_mean", torch.zeros(self.feature_dim))
        self.register_buffer("spec_std", torch.ones(self.feature_dim))

    # ------------------------------------------------------------------ timing
    @property
    def frame_samples(self) -> int:
        """Input samples per motion frame (640 at 16 kHz and 25 fps)."""
        return round(self.sample_rate / self.fps)

    @property
    def window_samples(self) -> int:
        """Samples of the spectrum window a pose reads, ending at its frame's end:
        ``n_fft + (context - 1) * hop_length`` (1376, 86 ms, for the recipe's)."""
        return self.config["n_fft"] + (self.context - 1) * self.config["hop_length"]

    @property
    def latency_samples(self) -> int:
        """Stated latency of streaming generation (samples): one motion frame plus the spectrum window (126 ms
        for the recipe's). A frame's pose is out when the frame's last sample is in, and it answers the
        ``window_samples`` heard before that."""
        return self.frame_samples + self.window_samples

    # ------------------------------------------------------------------ data
    def features(self, wav: torch.Tensor, lead: int = 0) -> torch.Tensor:
        """Spectrum windows ``[B, T, feature_dim]`` of ``wav [B, N]`` at :attr:`sample_rate`."""
        c = self.config
        return frame_log_power(wav, self.sample_rate, self.fps, c["n_fft"], c["hop_length"], self.context, lead)

    def set_stats(self, pose_mean, pose_std, spec_mean, spec_std) -> None:
        """Set the normalisation statistics (training data): pose ``[72]`` and spectrum ``[feature_dim]``."""
        for name, value in (("pose_mean", pose_mean), ("pose_std", pose_std), ("spec_mean", spec_mean),
                            ("spec_std", spec_std)):
            value = torch.as_tensor(np.asarray(value), dtype=torch.float32)
            if name.endswith("std"):
                value = value.clamp_min(1e-3)
            getattr(self, name).copy_(value)

    def normalise(self, poses: torch.Tensor) -> torch.Tensor:
        """Pose vectors (:func:`poses_from_positions`) -> the network's normalised poses."""
        return (poses - self.pose_mean) / self.pose_std

    def denormalise(self, poses: torch.Tensor) -> torch.Tensor:
        return poses * self.pose_std + self.pose_mean

    # ------------------------------------------------------------------ encoder
    def _frames(self, spec: torch.Tensor) -> torch.Tensor:
        """Per-frame conv part: ``[B, T, F] -> [B, T, hidden]``."""
        b, t, _ = spec.shape
        x = ((spec - self.spec_mean) / self.spec_std).reshape(b * t, 1, self.context, self.bins)
        return self.conv_out(self.conv(x).flatten(1)).relu().reshape(b, t, -1)

    def encode(self, spec: torch.Tensor, state: Optional[State] = None) -> Tuple[torch.Tensor, State]:
        """Audio embeddings ``[B, T, embedding_dim]`` of spectra ``[B, T, F]``, with the encoder state."""
        x = self._frames(spec)
        new = {}
        if self.encoder_kind == "lstm":
            hc = None if state is None else (state["enc_h"], state["enc_c"])
            x, (h, c) = self.encoder(x, hc)
            new = {"enc_h": h, "enc_c": c}
        else:
            for i, block in enumerate(self.encoder):
                old = None if state is None else {"history": state[f"enc{i}"]}
                x, s = block.step(x, old)
                new[f"enc{i}"] = s["history"]
        return self.embed(x), new

    # ------------------------------------------------------------------ decoder
    def style_logits(self, emb: torch.Tensor) -> torch.Tensor:
        """Per-frame style logits ``[B, T, num_styles]`` of audio embeddings ``[B, T, E]`` (the style head)."""
        return self.style_head(emb)

    def _auto_styles(self, emb, logit_sum=None, count=0):
        """Style vectors ``[B, T, style_dim]`` picked from the music (see the module docstring), continuing a
        stream whose logits so far sum to ``logit_sum`` over ``count`` frames; returns them and the new sum."""
        cumulative = self.style_logits(emb).cumsum(1)
        if logit_sum is not None:
            cumulative = cumulative + logit_sum[:, None]
        frames = count + torch.arange(1, emb.shape[1] + 1, device=emb.device, dtype=emb.dtype)
        weights = (cumulative / frames[:, None]).softmax(-1)
        return weights @ self.style.weight[:self.num_styles], cumulative[:, -1]

    def _style_vector(self, style, batch: int, device) -> Optional[torch.Tensor]:
        if self.style is None:
            return None
        if isinstance(style, str) and style == "auto":
            raise ValueError("style 'auto' is resolved per frame, not here")
        if style is None:
            style = torch.full((batch,), self.num_styles, dtype=torch.long, device=device)
        elif isinstance(style, (int, str)):
            style = torch.full((batch,), STYLES.index(style) if isinstance(style, str) else style,
                               dtype=torch.long, device=device)
        return self.style(torch.as_tensor(style, device=device).long())

    def _decode(self, emb, prev, style_vec, hc):
        """Decoder over ``emb [B, t, E]`` with given previous poses ``prev [B, t, P]``."""
        if style_vec is not None and style_vec.dim() == 2:
            style_vec = style_vec[:, None].expand(-1, emb.shape[1], -1)
        parts = [emb, prev] + ([style_vec] if style_vec is not None else [])
        y, hc = self.decoder(torch.cat(parts, -1), hc)
        return self.out(y), hc

    def _autoregress(self, emb, first, style_vec, hc, targets=None, mask=None):
        """Poses for each frame of ``emb [B, t, E]``; the pose before the first is ``first [B, P]``. Where
        ``mask[k]`` is True the decoder is fed ``targets[:, k - 1]`` (teacher) instead of its own output.
        ``style_vec``: ``[B, S]``, or ``[B, t, S]`` per frame."""
        def styles(a, b):
            return style_vec[:, a:b] if style_vec is not None and style_vec.dim() == 3 else style_vec

        outputs, prev = [], first
        k, t = 0, emb.shape[1]
        while k < t:
            if mask is not None and bool(mask[k]):  # a run of teacher frames: one LSTM call
                end = k
                while end < t and bool(mask[end]):
                    end += 1
                inputs = targets[:, k - 1:end - 1] if k else torch.cat([first[:, None], targets[:, :end - 1]], 1)
                y, hc = self._decode(emb[:, k:end], inputs, styles(k, end), hc)
                outputs.append(y)
                prev, k = y[:, -1], end
            else:
                y, hc = self._decode(emb[:, k:k + 1], prev[:, None], styles(k, k + 1), hc)
                outputs.append(y)
                prev, k = y[:, 0], k + 1
        return torch.cat(outputs, 1), hc

    def forward(self, spec: torch.Tensor, poses: torch.Tensor, teacher_mask=None, style=None):
        """Auto-conditioned training pass.

        ``spec [B, T, F]`` raw spectra, ``poses [B, T, P]`` normalised poses, ``teacher_mask [T - 1]`` bool
        (None: all True, plain teacher forcing): the prediction of frame ``t`` (1..T-1) is fed the true pose of
        frame ``t - 1`` where ``teacher_mask[t - 1]``, else its own prediction of that frame (frame 0 is always
        the true one). Returns ``(predictions [B, T - 1, P] of poses[:, 1:], audio embeddings [B, T, E])``.
        """
        emb, _ = self.encode(spec)
        style_vec = self._styles(style, emb)
        if teacher_mask is None:
            pred, _ = self._decode(emb[:, 1:], poses[:, :-1], style_vec, None)
            return pred, emb
        mask = torch.as_tensor(teacher_mask, dtype=torch.bool).tolist()
        mask[0] = True
        pred, _ = self._autoregress(emb[:, 1:], poses[:, 0], style_vec, None, poses[:, 1:], mask)
        return pred, emb

    def _styles(self, style, emb):
        """The style input of frames 1.. of ``emb``: ``[B, S]``, per frame ``[B, T - 1, S]`` ("auto"), or None."""
        if self.style is not None and isinstance(style, str) and style == "auto":
            return self._auto_styles(emb)[0][:, 1:]
        return self._style_vector(style, emb.shape[0], emb.device)

    @torch.no_grad()
    def generate(self, spec: torch.Tensor, first_pose: Optional[torch.Tensor] = None, style=None) -> torch.Tensor:
        """Offline generation: normalised poses ``[B, T, P]`` for spectra ``[B, T, F]``; frame 0 is
        ``first_pose [B, P]`` (normalised; None: the mean pose), the others each fed the one before."""
        b = spec.shape[0]
        first = spec.new_zeros(b, POSE_DIM) if first_pose is None else first_pose
        emb, _ = self.encode(spec)
        rest, _ = self._autoregress(emb[:, 1:], first, self._styles(style, emb), None)
        return torch.cat([first[:, None], rest], 1)

    # ------------------------------------------------------------------ streaming
    def start(self, first_pose: Optional[torch.Tensor] = None, style=None, batch: int = 1) -> State:
        """The state a stream starts from (what :meth:`step` uses when given None)."""
        device = self.pose_mean.device
        first = torch.zeros(batch, POSE_DIM, device=device) if first_pose is None else first_pose
        state = {"prev": first, "frame": torch.zeros((), dtype=torch.long, device=device)}
        if self.style is not None and isinstance(style, str) and style == "auto":
            state["style_sum"] = torch.zeros(first.shape[0], self.num_styles, device=device)
            return state
        style_vec = self._style_vector(style, first.shape[0], device)
        if style_vec is not None:
            state["style"] = style_vec
        return state

    @torch.no_grad()
    def step(self, spec: torch.Tensor, state: Optional[State]) -> Tuple[torch.Tensor, State]:
        """Streaming generation: spectra ``[B, n, F]`` of the next ``n`` frames -> their normalised poses
        ``[B, n, P]`` and the new state (encoder and decoder states, the last pose, the frame count, the style
        vector). The concatenated outputs equal :meth:`generate` on the whole spectrum."""
        if state is None:
            state = self.start(batch=spec.shape[0])
        emb, enc_state = self.encode(spec, {k: v for k, v in state.items() if k.startswith("enc")} or None)
        hc = (state["dec_h"], state["dec_c"]) if "dec_h" in state else None
        prev, outputs, extra = state["prev"], [], {}
        style_vec = state.get("style")
        if "style_sum" in state:
            style_vec, extra["style_sum"] = self._auto_styles(emb, state["style_sum"], int(state["frame"]))
        first = int(state["frame"]) == 0
        if first:
            outputs.append(prev[:, None])
            emb = emb[:, 1:]
            style_vec = style_vec[:, 1:] if style_vec is not None and style_vec.dim() == 3 else style_vec
        if emb.shape[1]:
            y, hc = self._autoregress(emb, prev, style_vec, hc)
            outputs.append(y)
            prev = y[:, -1]
        new = {"prev": prev, "frame": state["frame"] + spec.shape[1], **enc_state, **extra}
        if hc is not None:
            new["dec_h"], new["dec_c"] = hc
        if "style" in state:
            new["style"] = state["style"]
        return torch.cat(outputs, 1), new

    # ------------------------------------------------------------------ convenience
    @torch.no_grad()
    def dance(self, wav, style=None, first_positions=None) -> np.ndarray:
        """World positions ``[T, 23, 3]`` (cm) dancing to ``wav [N]`` (mono, at :attr:`sample_rate`)."""
        wav = torch.as_tensor(np.asarray(wav, dtype=np.float32), device=self.pose_mean.device)[None]
        first = None
        if first_positions is not None:
            first = self.normalise(torch.as_tensor(poses_from_positions(np.asarray(first_positions)[None]),
                                                   device=wav.device))
        poses = self.denormalise(self.generate(self.features(wav), first, style))[0].cpu().numpy()
        return positions_from_poses(poses)
