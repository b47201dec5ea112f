"""On-the-fly multi-speaker mixtures for speech separation.

Extends :class:`~audiokit.tasks.data.NoisySpeechDataset` (file scanning, caching, noise and
reverberation come from there and from :mod:`audiokit.tasks.augment`): each item sums
``num_speakers`` segments of *different* speakers at random relative levels, optionally
reverberated (each speaker in its own room) and with noise. Speakers are read from file names
(:func:`speaker_of`), so whole speakers can be held out of training (``holdout_speakers``).
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from audiokit.tasks.augment import db_to_amplitude, rms, scale_to_snr, set_level
from audiokit.tasks.data import NoisySpeechDataset, speaker_of


class SpeakerMixtureDataset(NoisySpeechDataset):
    """A "virtual" dataset of ``epoch_size`` random multi-speaker mixtures.

    Args (beyond :class:`NoisySpeechDataset`'s, whose ``mixer`` gives the noise kinds, SNR
    range, mixture level range and reverberation settings):
        num_speakers: sources per mixture (S).
        relative_db: uniform range (dB) of each further speaker's level against the first
            (all are RMS-normalised first).
        noise_prob: probability of adding noise (at the mixer's SNR against the speech sum).
        holdout_speakers: speaker ids (see :func:`speaker_of`) left out of ``split`` train/valid/all;
            ``split="heldout"`` uses only them.

    Item: ``noisy`` (the mixture) [T], ``clean`` (the sources, reverberant ones as the mixer's
    early-reverb targets) [S, T] with the mixture's gain, ``snr_db`` (inf without noise),
    ``speakers`` (their ids).
    Item ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)``.
    """

    def __init__(self, speech_folders, noise_folders=(), rir_folders=(), extra_speech=(),
                 sample_rate: int = 8000, segment_seconds=(3.0, 4.0), epoch_size: int = 1000,
                 seed: int = 0, mixer=None, split: str = "all", valid_fraction: float = 0.0,
                 num_speakers: int = 2, relative_db=(-5.0, 5.0), noise_prob: float = 0.0,
                 holdout_speakers=()):
        holdout = set(holdout_speakers or ())
        super().__init__(speech_folders, noise_folders, rir_folders, extra_speech, sample_rate,
                         segment_seconds, epoch_size, seed, mixer,
                         "all" if split == "heldout" else split, valid_fraction)
        keep_heldout = split == "heldout"
        self.speech_files = [f for f in self.speech_files if (speaker_of(f) in holdout) == keep_heldout]
        by_speaker = defaultdict(list)
        for f in self.speech_files:
            by_speaker[speaker_of(f)].append(f)
        self.speakers = dict(sorted(by_speaker.items()))
        if len(self.speakers) < num_speakers:
            raise ValueError(f"{split} split: {len(self.speakers)} speaker(s) found, need {num_speakers} "
                             f"(speech folders {list(speech_folders) + list(extra_speech or [])})")
        self.num_speakers = int(num_speakers)
        self.relative_db = tuple(relative_db)
        self.noise_prob = float(noise_prob)

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        num = int(rng.uniform(*self.segment_seconds) * self.sample_rate)
        names = list(self.speakers)
        chosen = rng.choice(len(names), size=self.num_speakers, replace=False)
        rirs = [self.load(p) for p in self.rir_files]
        wet, targets = [], []
        for k, speaker in enumerate(chosen):
            speech = self._speech(num, rng, self.speakers[names[int(speaker)]])
            gain = (db_to_amplitude(float(rng.uniform(*self.relative_db))) if k else 1.0) / (float(rms(speech)) + 1e-8)
            reverberant, target = self.mixer.reverb(speech * gain, self.sample_rate, rirs, rng)
            wet.append(reverberant)
            targets.append(target)
        mixture = torch.stack(wet).sum(0)
        snr = float("inf")
        if rng.random() < self.noise_prob:
            noise, _ = self._noise(num, rng)
            snr = float(rng.uniform(*self.mixer.snr_db))
            mixture = mixture + scale_to_snr(mixture, noise, snr)
        mixture, sources, _ = set_level(mixture, targets, float(rng.uniform(*self.mixer.level_dbfs)))
        return {"noisy": mixture, "clean": torch.stack(sources), "snr_db": snr,
                "speakers": [names[int(k)] for k in chosen]}
