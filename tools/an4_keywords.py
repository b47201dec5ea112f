"""Keyword clips from CMU AN4 in the Speech Commands layout: more voices for training the keyword spotter.

    git clone --depth 1 https://github.com/cmusphinx/an4 ../extdata/an4_repo      # data only; never commit it
    python tools/an4_keywords.py ../extdata/an4_repo ../extdata/an4_keywords
    audiokit train recipes/classification/lssl_speech_commands.yaml --extra_train_data "[../extdata/an4_keywords]"

AN4 (84 speakers, BSD-style licence) has no word timings, so only its one-word utterances are used: their word
is known.  Each becomes the loudest 1 s of its recording (16 kHz), written as ``<word>/<speaker>_nohash_<n>.wav``
under OUT: "yes", "no", "stop" and "go" are command words of the recipe; the others ("repeat", "help", "start",
...) land in word folders that the recipe reads as ``_unknown_``.  OUT is written through ``OUT.partial`` and
renamed when whole; an OUT that already holds files is left alone.
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000
#: AN4's transcription files and the wav folder of each
TRANSCRIPTIONS = {"an4_train.transcription": "an4_clstk", "an4_test.transcription": "an4test_clstk"}
LINE = re.compile(r"^<s>\s+(?P<words>.*?)\s+</s>\s+\((?P<id>[^)]+)\)\s*$")


def single_word_utterances(repo: Path) -> list[tuple[Path, str, str]]:
    """``(wav path, word, speaker)`` of every one-word utterance listed in ``repo/etc``'s transcriptions."""
    found = []
    for name, folder in TRANSCRIPTIONS.items():
        for line in (repo / "etc" / name).read_text().splitlines():
            match = LINE.match(line.strip())
            if not match or len(match["words"].split()) != 1:
                continue
            speaker = match["id"].split("-")[1]
            found.append((repo / "wav" / folder / speaker / f"{match['id']}.wav", match["words"].lower(), speaker))
    return found


def loudest_second(wav: np.ndarray, num: int = RATE) -> np.ndarray:
    """The ``num`` samples of ``wav`` [T] with the most energy (zero-padded at the end when shorter)."""
    if wav.size <= num:
        return np.pad(wav, (0, num - wav.size))
    energy = np.concatenate([[0.0], np.cumsum(wav.astype(np.float64) ** 2)])
    start = int(np.argmax(energy[num:] - energy[:-num]))
    return wav[start:start + num]


def write_clips(repo: Path, out: Path) -> dict[tuple[str, str], int]:
    """Write the clips (see the module docstring); returns the number of clips per ``(speaker, word)``."""
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    takes = defaultdict(int)
    for path, word, speaker in single_word_utterances(repo):
        wav, rate = sf.read(path, dtype="float32")
        if rate != RATE or wav.ndim != 1:
            raise ValueError(f"{path}: expected 16 kHz mono, got {rate} Hz, shape {wav.shape}")
        target = partial / word / f"{speaker}_nohash_{takes[speaker, word]}.wav"
        target.parent.mkdir(parents=True, exist_ok=True)
        sf.write(target, loudest_second(wav), RATE, subtype="PCM_16")
        takes[speaker, word] += 1
    if not takes:
        raise ValueError(f"{repo}: no one-word utterances found (is it a clone of cmusphinx/an4?)")
    if out.is_dir():
        out.rmdir()  # empty (main skips targets that hold files)
    partial.rename(out)
    return dict(takes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("an4", type=Path, help="a clone of https://github.com/cmusphinx/an4 (etc/ and wav/)")
    parser.add_argument("out", type=Path, help="folder to write, in the Speech Commands layout")
    args = parser.parse_args(argv)
    if args.out.is_dir() and any(args.out.iterdir()):
        print(f"{args.out}: already there")
        return 0
    try:
        takes = write_clips(args.an4, args.out)
    except (OSError, ValueError, RuntimeError) as exc:  # soundfile raises RuntimeError subclasses
        print(f"error: {exc}", file=sys.stderr)
        return 1
    counts = Counter()
    for (_, word), n in takes.items():
        counts[word] += n
    speakers = len({speaker for speaker, _ in takes})
    print(f"{args.out}: {sum(counts.values())} clips of {speakers} speakers: "
          + ", ".join(f"{w} {n}" for w, n in sorted(counts.items(), key=lambda kv: -kv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
