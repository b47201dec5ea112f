"""Labelled speech clips for classification: Speech Commands (12-class keyword spotting) and the Free
Spoken Digit Dataset, read in their own layouts, split by speaker, with training augmentation.

* Speech Commands: one folder per word (``yes/0cb74144_nohash_1.wav``); the 10 command words keep their
  label, every other word folder is ``_unknown_``; ``_silence_`` clips are 1 s of background noise, and
  where the folder is absent (the full download) silence clips are cut from ``_background_noise_``.
  Speakers (the hash before ``_nohash_``) are split by CRC32 into train/valid/test, so the same layout
  runs on the 3,859 test clips in ``../shared/data/speech_commands`` and on the full download.
* FSDD: ``{digit}_{speaker}_{index}`` files; ``split`` "standard" (index 0-4 test, the rest train) or
  leave-one-speaker-out (``holdout_speaker`` is the test set); validation is a CRC32 share of the
  training files (never the test set).

A clip item is ``{"wav": [T] float32 at sample_rate, "label": int, "length": T}``; :func:`pad_collate`
batches them (right zero padding: the classifiers are causal, so padding never changes the logits they
report at an item's own last frame).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF

from audiokit.tasks.augment import random_segment, rms, scale_to_snr
from audiokit.tasks.data import AudioCache, find_audio, resolve_folder, speaker_of

COMMAND_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN, SILENCE = "_unknown_", "_silence_"
SPEECH_COMMANDS_LABELS = COMMAND_WORDS + (UNKNOWN, SILENCE)
BACKGROUND = "_background_noise_"
DIGIT_LABELS = tuple(str(d) for d in range(10))


@dataclass(frozen=True)
class Clip:
    """One labelled file: ``offset`` >= 0 picks the offset-th 1 s window of a long noise file (silence cut
    from background noise; -1: the whole file); ``take`` is the recording's number (FSDD's index)."""

    path: Path
    label: int
    speaker: str
    offset: int = -1
    take: int = -1


def crc_share(key: str) -> float:
    """A stable number in [0, 1) for ``key`` (CRC32), the same on every machine."""
    return zlib.crc32(key.encode()) / 2**32


def speaker_split(clips: list[Clip], split: str, valid_fraction: float, test_fraction: float) -> list[Clip]:
    """The clips of ``split`` ("train", "valid", "test" or "all"): a speaker is in test when its CRC share is
    below ``test_fraction``, in valid when below ``test_fraction + valid_fraction``, else in train."""
    if split == "all":
        return list(clips)
    def side(clip):
        share = crc_share(clip.speaker)
        return "test" if share < test_fraction else "valid" if share < test_fraction + valid_fraction else "train"
    return [c for c in clips if side(c) == split]


def speech_commands_clips(root, labels=SPEECH_COMMANDS_LABELS, silence_per_file: int = 0) -> list[Clip]:
    """Every clip under ``root`` labelled by its folder (see the module docstring). Without a ``_silence_``
    folder, ``silence_per_file`` 1 s windows of each ``_background_noise_`` file become silence clips."""
    root = resolve_folder(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: data folder not found")
    index = {name: i for i, name in enumerate(labels)}
    clips = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name == BACKGROUND:
            continue
        label = index.get(folder.name, index[UNKNOWN])
        for path in find_audio([folder]):
            speaker = path.name if folder.name == SILENCE else speaker_of(path)
            clips.append(Clip(path, label, speaker))
    background = root / BACKGROUND
    if not (root / SILENCE).is_dir() and background.is_dir():
        for path in find_audio([background]):
            clips += [Clip(path, index[SILENCE], f"{path.name}#{k}", offset=k) for k in range(silence_per_file)]
    if not clips:
        raise FileNotFoundError(f"{root}: no labelled clips (expected word folders of wav/flac files)")
    return clips


def digit_clips(root) -> list[Clip]:
    """FSDD files ``{digit}_{speaker}_{index}``, labelled by digit."""
    clips = []
    for path in find_audio([root]):
        digit, speaker, number = path.stem.split("_")
        clips.append(Clip(path, int(digit), speaker, take=int(number)))
    if not clips:
        raise FileNotFoundError(f"{resolve_folder(root)}: no FSDD recordings")
    return clips


def digit_split(clips: list[Clip], split: str, holdout_speaker: str | None = None,
                valid_fraction: float = 0.1) -> list[Clip]:
    """FSDD ``split`` ("train", "valid", "test"): test is index 0-4 of every speaker (the standard split) or,
    with ``holdout_speaker``, all of that speaker's files (leave one speaker out); valid is the training
    files whose CRC share of the name is below ``valid_fraction``; train is the rest."""
    def is_test(clip):
        return clip.speaker == holdout_speaker if holdout_speaker else clip.take < 5
    if split == "test":
        return [c for c in clips if is_test(c)]
    rest = [c for c in clips if not is_test(c)]
    return [c for c in rest if (crc_share(c.path.name) < valid_fraction) == (split == "valid")]


@dataclass
class ClipAugment:
    """Training augmentation of one clip: time shift, gain, speed, background noise and band limit.

    shift_seconds: largest circular-free shift (zeros enter) either way; gain_db: uniform gain range;
    speed: uniform range of the playback-speed factor (resampling, so pitch moves with it);
    noise_prob / snr_db: chance of adding a random noise segment and its SNR range (dB);
    band_limit_prob / band_limit_rates: chance of passing the clip (speech and noise) through one of
    these lower sample rates (Hz) and back, as audio recorded at that rate reaches the model.
    """

    shift_seconds: float = 0.1
    gain_db: tuple = (-10.0, 6.0)
    speed: tuple = (0.9, 1.1)
    noise_prob: float = 0.8
    snr_db: tuple = (0.0, 25.0)
    band_limit_prob: float = 0.0
    band_limit_rates: tuple = (8000,)

    def __call__(self, wav: torch.Tensor, rate: int, rng: np.random.Generator, noises: list[torch.Tensor]):
        num = wav.numel()
        factor = float(rng.uniform(*self.speed))
        if abs(factor - 1.0) > 1e-3:  # played faster: fewer samples at the same rate
            wav = AF.resample(wav, int(round(rate * factor / 100)) * 100, rate)
        shift = int(rng.integers(-int(self.shift_seconds * rate), int(self.shift_seconds * rate) + 1))
        wav = torch.roll(fit_length(wav, num), shift)
        if shift > 0:
            wav[:shift] = 0
        elif shift < 0:
            wav[shift:] = 0
        if noises and rng.random() < self.noise_prob and float(rms(wav)) > 1e-5:
            noise = random_segment(noises[int(rng.integers(len(noises)))], num, rng)
            wav = wav + scale_to_snr(wav, noise, float(rng.uniform(*self.snr_db)))
        if rng.random() < self.band_limit_prob:
            low = int(self.band_limit_rates[int(rng.integers(len(self.band_limit_rates)))])
            wav = fit_length(AF.resample(AF.resample(wav, rate, low), low, rate), num)
        return wav * 10.0 ** (float(rng.uniform(*self.gain_db)) / 20.0)


def fit_length(wav: torch.Tensor, num: int) -> torch.Tensor:
    """``wav`` [T] cut or right-padded with zeros to ``num`` samples, centred when cut."""
    if wav.numel() >= num:
        start = (wav.numel() - num) // 2
        return wav[start:start + num].clone()
    return torch.nn.functional.pad(wav, (0, num - wav.numel()))


class ClipDataset(torch.utils.data.Dataset):
    """Clips at ``sample_rate``, each cut or padded to ``clip_seconds`` (None: its own length), augmented
    when ``augment`` is given (item ``i`` of epoch ``e`` drawn from ``default_rng([seed, e, i])``).

    ``noise_folders`` feed the augmentation's background noise; ``labels`` names the classes.
    """

    def __init__(self, clips: list[Clip], labels, sample_rate: int = 16000, clip_seconds: float | None = 1.0,
                 augment: ClipAugment | None = None, noise_folders=(), seed: int = 0):
        if not clips:
            raise ValueError("no clips in this split")
        self.clips, self.labels = list(clips), tuple(labels)
        self.sample_rate, self.clip_seconds = int(sample_rate), clip_seconds
        self.augment, self.seed, self.epoch = augment, int(seed), 0
        self.load = AudioCache(self.sample_rate)
        self.noise_files = find_audio(noise_folders) if augment is not None else []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[index]
        wav = self.load(clip.path)
        num = int(self.clip_seconds * self.sample_rate) if self.clip_seconds else wav.numel()
        if clip.offset >= 0:  # silence window cut from a long background file
            start = (clip.offset * num) % max(wav.numel() - num, 1)
            wav = wav[start:start + num]
        wav = fit_length(wav, num)
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, int(index)])
            wav = self.augment(wav, self.sample_rate, rng, [self.load(p) for p in self.noise_files])
        return {"wav": wav, "label": clip.label, "length": num}


def pad_collate(items: list[dict]) -> dict:
    """``wav`` [B, T] (right zero padding to the longest), ``label`` [B] int64, ``length`` [B] samples."""
    num = max(item["wav"].numel() for item in items)
    return {"wav": torch.stack([torch.nn.functional.pad(item["wav"], (0, num - item["wav"].numel()))
                                for item in items]),
            "label": torch.tensor([item["label"] for item in items]),
            "length": torch.tensor([item["length"] for item in items])}


def speech_commands_set(root, split: str, sample_rate: int = 16000, valid_fraction: float = 0.1,
                        test_fraction: float = 0.15, augment: ClipAugment | None = None, noise_folders=(),
                        seed: int = 0, silence_per_file: int = 60, extra_train_data=()) -> ClipDataset:
    """A :class:`ClipDataset` of one speaker-disjoint split of Speech Commands (12 classes, 1 s clips).

    ``extra_train_data``: more folders in the same layout (e.g. ``tools/an4_keywords.py``'s) whose clips all
    join the training split, whatever their speakers' hash: never validation or test."""
    clips = speaker_split(speech_commands_clips(root, silence_per_file=silence_per_file), split,
                          valid_fraction, test_fraction)
    if split == "train":
        for folder in extra_train_data or ():
            clips += speech_commands_clips(folder, silence_per_file=0)
    return ClipDataset(clips, SPEECH_COMMANDS_LABELS, sample_rate, 1.0, augment, noise_folders, seed)


def digits_set(root, split: str, sample_rate: int = 8000, holdout_speaker: str | None = None,
               valid_fraction: float = 0.1, augment: ClipAugment | None = None, noise_folders=(),
               seed: int = 0) -> ClipDataset:
    """A :class:`ClipDataset` of one FSDD split (clips keep their own length)."""
    clips = digit_split(digit_clips(root), split, holdout_speaker, valid_fraction)
    return ClipDataset(clips, DIGIT_LABELS, sample_rate, None, augment, noise_folders, seed)
