"""A tiny random-weight FRCRN saved as a pretrained file, for CLI/API tests (the shipped weights are trained
elsewhere)."""
from __future__ import annotations

from pathlib import Path

import torch

from audiokit.hub.pretrained import save_pretrained
from audiokit.models.frcrn import FRCRN

TINY = dict(win_len=320, win_inc=160, fft_len=320, channels=4, fsmn_hidden=4)


def tiny_frcrn(causal: bool = True, seed: int = 0, **changes) -> FRCRN:
    """FRCRN with 4 channels, 320/160 STFT at 16 kHz, random weights, eval mode."""
    torch.manual_seed(seed)
    return FRCRN(**{**TINY, "causal": causal, **changes}).eval()


def save_tiny(path: Path, causal: bool = True, **changes) -> Path:
    """Save ``tiny_frcrn`` as a pretrained file at ``path``; returns ``path``."""
    model = tiny_frcrn(causal, **changes)
    return save_pretrained(model, path, "frcrn", model.config, {"note": "random weights, for tests"})


KEYWORDS = ("go", "stop", "_unknown_", "_silence_")
TINY_LSSL = dict(num_classes=4, labels=list(KEYWORDS), channels=8, state_size=8, num_layers=2, dropout=0.0,
                 pool_seconds=0.25)


def tiny_lssl(seed: int = 0, **changes):
    """An LSSLClassifier with 4 classes (:data:`KEYWORDS`), 8 channels, 2 layers, a 0.25 s pooling window, random
    weights, eval mode."""
    from audiokit.models.lssl_classifier import LSSLClassifier

    torch.manual_seed(seed)
    return LSSLClassifier(**{**TINY_LSSL, **changes}).eval()


def save_tiny_lssl(path: Path, **changes) -> Path:
    """Save ``tiny_lssl`` as a pretrained file at ``path``; returns ``path``."""
    model = tiny_lssl(**changes)
    return save_pretrained(model, path, "lssl_classifier", model.config, {"note": "random weights, for tests"})


class DCWords(torch.nn.Module):
    """Stand-in streaming classifier whose posteriors are known: per 10 ms frame (160 samples at 16 kHz) of mean
    ``m``, the logits of :data:`KEYWORDS` are ``[gain * m, -gain * m, -10, 3]``: a positive offset says "go", a
    negative one "stop", silence "_silence_" (posterior 0.91). No memory across frames; ``pool_seconds`` 0.1
    (it pools nothing, but the classifier pads short clips to that window)."""

    sample_rate, frame_samples, num_classes, labels, pool_seconds = 16000, 160, 4, list(KEYWORDS), 0.1

    def __init__(self, gain: float = 40.0):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(float(gain)))

    def frame_logits(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, T] -> [B, T // 160, 4]`` (a last partial frame gives none)."""
        mean = wav[:, :wav.shape[-1] // 160 * 160].unflatten(-1, (-1, 160)).mean(-1)
        fixed = torch.tensor([-10.0, 3.0]).expand(*mean.shape, 2)
        return torch.cat([torch.stack([self.gain * mean, -self.gain * mean], -1), fixed], -1)

    def step(self, chunk: torch.Tensor, state):
        if state is not None:
            chunk = torch.cat([state["pending"], chunk], -1)
        done = chunk.shape[-1] // 160 * 160
        return self.frame_logits(chunk[:, :done]), {"pending": chunk[:, done:]}


def save_dc_words(path: Path) -> Path:
    """Save a :class:`DCWords` as a pretrained file of family ``"dcwords"`` (registered now)."""
    from audiokit.hub import registry

    registry.register("dcwords", DCWords)
    return save_pretrained(DCWords(), path, "dcwords", {"gain": 40.0})


TINY_DANCE = dict(sample_rate=16000, n_fft=64, hop_length=160, context=4, conv_channels=(4,), hidden=16,
                  encoder_layers=1, embedding_dim=8, decoder_hidden=16, decoder_layers=1, style_dim=4)


def tiny_dance(seed: int = 0, **changes):
    """A DanceGenerator at 16 kHz and 25 fps (640 samples a frame, a 544-sample spectrum window), 16 wide, random
    weights, eval mode, its poses spread about 2 cm around a standing body (:func:`test_motion.t_pose`)."""
    import numpy as np
    from test_motion import t_pose

    from audiokit.models.dance import DanceGenerator, poses_from_positions

    torch.manual_seed(seed)
    model = DanceGenerator(**{**TINY_DANCE, **changes}).eval()
    mean = poses_from_positions(t_pose()[None] + [0.0, 95.0, 0.0])[0]
    std = np.concatenate([np.full(69, 2.0), [1.0, 0.5, 0.5]])
    model.set_stats(mean, std, np.full(model.feature_dim, -5.0), np.full(model.feature_dim, 5.0))
    return model


def save_tiny_dance(path: Path, **changes) -> Path:
    """Save ``tiny_dance`` as a pretrained file at ``path``; returns ``path``."""
    model = tiny_dance(**changes)
    return save_pretrained(model, path, "dance_lstm", model.config, {"note": "random weights, for tests"})
