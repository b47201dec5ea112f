"""On-the-fly noisy/clean training pairs for speech enhancement.

Corpora are folders of wav/flac files (searched recursively, any sample rate, resampled
to the recipe rate and cached in memory as float32 mono, since the corpora are small).
Relative folder paths are taken from the working directory, whether given on the command line or in the
recipe (``data_root: ../shared/data`` means the ``shared`` folder beside a checkout run from its root).
"""
from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from audiokit.audio.io import read_audio
from audiokit.audio.resample import resample
from audiokit.tasks.augment import NOISE_COLOURS, Mixer, coloured_noise, db_to_amplitude, random_segment, rms

AUDIO_SUFFIXES = {".wav", ".flac"}
#: folders that are evaluation data and must never be trained on
FORBIDDEN_PARTS = {"noisy_dev"}


def resolve_folder(folder: str | Path) -> Path:
    """Absolute path of ``folder``; a relative one is taken from the working directory (as ``--output_folder``
    is), whether it comes from the command line or the recipe."""
    return Path(folder).expanduser().resolve()


def find_audio(*folder_lists, exclude=()) -> list[Path]:
    """Sorted wav/flac files found recursively under every folder of the given lists, less those
    below a folder named in ``exclude`` (e.g. Speech Commands' ``_silence_``, which holds noise).

    Raises FileNotFoundError naming a missing folder, ValueError for a dev-set folder.
    """
    skipped = set(exclude or ())
    files = []
    for folder in (f for folders in folder_lists for f in (folders or [])):
        path = resolve_folder(folder)
        if FORBIDDEN_PARTS & set(path.parts):
            raise ValueError(f"{path}: is the development set, never train on it")
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: data folder not found")
        files += [p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES
                  and not (FORBIDDEN_PARTS | skipped) & set(p.relative_to(path).parts[:-1])]
    return sorted(set(files))


#: (file-stem pattern, speaker-id prefix); the first match names the speaker, else the parent folder
SPEAKER_PATTERNS = (
    (re.compile(r"^(\d+)-\d+-\d+$"), "libri"),              # LibriSpeech 103-1240-0000
    (re.compile(r"^cmu_arctic_\w+?_([a-z]+)_[ab]\d+$"), "arctic"),  # CMU ARCTIC
    (re.compile(r"^\d+_([a-z]+)_\d+$"), "fsdd"),             # Free Spoken Digit Dataset 3_jackson_12
    (re.compile(r"^(.+)_s\d{3}$"), "tts"),                    # synthetic voices espeak_en-gb_s001
    (re.compile(r"^(?:\w+_)?([0-9a-f]{8})_nohash_\d+$"), "sc"),  # Speech Commands [word_]0cb74144_nohash_1
)


def speaker_of(path: Path) -> str:
    """Speaker id of a corpus file, e.g. ``libri:103``, ``arctic:aew``, ``sc:0cb74144``, else
    ``<parent folder>`` (AN4 ``an4_clstk/fash/...``, LJSpeech)."""
    for pattern, prefix in SPEAKER_PATTERNS:
        match = pattern.match(path.stem)
        if match:
            return f"{prefix}:{match.group(1)}"
    return path.parent.name


#: what :func:`split_files` hashes to decide a file's side
SPLIT_KEYS = {"file": lambda path: path.name, "speaker": speaker_of}


def split_files(files: list[Path], valid_fraction: float, split: str, by: str = "file") -> list[Path]:
    """Deterministic hold-out: a file is in 'valid' when the CRC32 of its key (``by="file"``: its name;
    ``"speaker"``: :func:`speaker_of`, so no speaker is on both sides) falls below ``valid_fraction``
    (stable across machines and file-list changes); 'train' is the rest, 'all' everything."""
    if split == "all" or valid_fraction <= 0:
        return list(files)
    key = SPLIT_KEYS[by]
    is_valid = [zlib.crc32(key(f).encode()) / 2**32 < valid_fraction for f in files]
    chosen = [f for f, v in zip(files, is_valid) if v == (split == "valid")]
    return chosen or list(files)  # tiny corpora: rather overlap than be empty


class AudioCache:
    """Decodes files once to mono float32 tensors [T] at ``sample_rate`` (Hz): the channel mean of
    :func:`~audiokit.audio.io.read_audio` (AudioError naming a missing, bad or truncated file), resampled."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self._cache: dict[Path, torch.Tensor] = {}

    def __call__(self, path: Path) -> torch.Tensor:
        if path not in self._cache:
            data, rate = read_audio(path)
            wav = torch.from_numpy(data.mean(axis=0))
            if rate != self.sample_rate:
                wav = resample(wav, rate, self.sample_rate)
            self._cache[path] = wav.contiguous()
        return self._cache[path]


class NoisySpeechDataset(torch.utils.data.Dataset):
    """A "virtual" dataset of ``epoch_size`` random noisy/clean pairs.

    Item ``i`` of epoch ``e`` is generated from ``numpy.random.default_rng([seed, e, i])``,
    so runs are reproducible, items differ across indices and epochs, and DDP ranks
    (which draw different indices) see different data. Call ``set_epoch`` between epochs.

    ``split`` ("train", "valid" or "all") holds out ``valid_fraction`` of the speech, by file name or,
    with ``split_by="speaker"``, by whole speakers (:func:`speaker_of`), and ``noise_valid_fraction`` of
    the noise files, so validation can use voices and noises that training never heard.
    ``speech_exclude`` names folders under the speech folders to skip (noise kept among speech).
    ``weight_by_duration`` draws speech files in proportion to their length (every second of speech is
    equally likely, so a corpus of 1 s clips does not outweigh one of long utterances).

    Each item is a dict: ``noisy`` [T], ``clean`` [T] (float32, T samples at ``sample_rate``;
    T uniform in ``segment_seconds``), ``snr_db`` and ``noise`` (the noise kind).
    """

    def __init__(self, speech_folders, noise_folders=(), rir_folders=(), extra_speech=(),
                 sample_rate: int = 16000, segment_seconds=(2.0, 4.0), epoch_size: int = 1000,
                 seed: int = 0, mixer: Mixer | None = None, split: str = "all",
                 valid_fraction: float = 0.0, split_by: str = "file", speech_exclude=(),
                 noise_valid_fraction: float = 0.0, weight_by_duration: bool = False):
        self.speech_files = split_files(find_audio(speech_folders, extra_speech, exclude=speech_exclude),
                                        valid_fraction, split, by=split_by)
        if not self.speech_files:
            raise FileNotFoundError(f"no wav/flac speech files under {list(speech_folders) + list(extra_speech or [])}")
        self.noise_files = split_files(find_audio(noise_folders), noise_valid_fraction, split)
        self.speech_weights = None  # draw probabilities of self.speech_files (None: uniform)
        if weight_by_duration:
            seconds = np.array([sf.info(str(f)).duration for f in self.speech_files])
            self.speech_weights = seconds / seconds.sum()
        self.rir_files = find_audio(rir_folders)
        self.sample_rate = sample_rate
        self.segment_seconds = tuple(segment_seconds) if np.ndim(segment_seconds) else (segment_seconds,) * 2
        self.epoch_size = int(epoch_size)
        self.seed = int(seed)
        self.mixer = mixer or Mixer()
        self.epoch = 0
        self.load = AudioCache(sample_rate)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.epoch_size

    def _speech(self, num: int, rng: np.random.Generator, files: list[Path] | None = None) -> torch.Tensor:
        """A random non-silent speech segment [num] from ``files`` (default: all speech files, drawn by
        ``speech_weights``; up to 4 draws to avoid silence)."""
        weights = None if files else self.speech_weights
        files = files or self.speech_files
        for _ in range(4):
            path = files[int(rng.choice(len(files), p=weights) if weights is not None else rng.integers(len(files)))]
            seg = random_segment(self.load(path), num, rng)
            if rms(seg) > 1e-3:
                break
        return seg

    def _noise(self, num: int, rng: np.random.Generator) -> tuple[torch.Tensor, str]:
        """A noise [num] of a random kind, plus (``mixer.noise_mix_prob``) a second one 0-10 dB below it."""
        noise, kind = self._one_noise(num, rng)
        if self.mixer.noise_mix_prob and rng.random() < self.mixer.noise_mix_prob:
            other, other_kind = self._one_noise(num, rng)
            noise = noise / (rms(noise) + 1e-8) + other / (rms(other) + 1e-8) / db_to_amplitude(rng.uniform(0, 10))
            kind = f"{kind}+{other_kind}"
        return noise, kind

    def _one_noise(self, num: int, rng: np.random.Generator) -> tuple[torch.Tensor, str]:
        kind = self.mixer.pick_noise_kind(rng, bool(self.noise_files))
        if kind == "file":
            recording = self.load(self.noise_files[int(rng.integers(len(self.noise_files)))])
            return self.mixer.vary_noise(lambda n: random_segment(recording, n, rng), num, rng), kind
        if kind == "coloured":
            colour = list(NOISE_COLOURS)[int(rng.integers(len(NOISE_COLOURS)))]
            return coloured_noise(num, colour, rng), colour
        talkers = int(rng.integers(self.mixer.babble_talkers[0], self.mixer.babble_talkers[1] + 1))
        babble = sum(s / (rms(s) + 1e-8) for s in (self._speech(num, rng) for _ in range(talkers)))
        return babble, kind

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        num = int(rng.uniform(*self.segment_seconds) * self.sample_rate)
        speech = self._speech(num, rng)
        rirs = [self.load(p) for p in self.rir_files]
        wet, target = self.mixer.reverb(speech, self.sample_rate, rirs, rng)
        noise, kind = self._noise(num, rng)
        pair = self.mixer.mix(wet, noise, rng, target=target)
        return {"noisy": pair["noisy"], "clean": pair["clean"], "snr_db": pair["snr_db"], "noise": kind}


def crop_collate(items: list[dict]) -> dict:
    """Batch items by cropping all to the shortest: noisy [B, T], clean [B, T] (or [B, S, T] for
    separation items); snr_db [B]."""
    num = min(item["noisy"].shape[-1] for item in items)
    return {
        "noisy": torch.stack([item["noisy"][..., :num] for item in items]),
        "clean": torch.stack([item["clean"][..., :num] for item in items]),
        "snr_db": torch.tensor([item["snr_db"] for item in items]),
    }
