"""Fetch the extra training speech the separation recipes use (data only; never commit it).

    python tools/get_extra_speech.py ../extdata

makes ``../extdata/an4`` (CMU AN4 16 kHz wav, ``an4_clstk`` and ``an4test_clstk``, 84 speakers,
BSD-style licence) from https://github.com/cmusphinx/an4 and ``../extdata/libri251`` (one
LibriSpeech train-clean-100 utterance from each of 251 speakers, CC BY 4.0) from
https://github.com/resemble-ai/Resemblyzer.  Relative folders in the recipes are taken from the
repository root, so ``../extdata`` is what ``recipes/separation/*.yaml`` expect.  Needs ``git``
and network access; folders that already hold files are left alone.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCES = {  # target folder: (repository, folder inside it whose files are copied, flatten?)
    "an4": ("https://github.com/cmusphinx/an4", "wav", False),
    "libri251": ("https://github.com/resemble-ai/Resemblyzer", "audio_data/librispeech_train-clean-100", True),
}


def fetch(url: str, inside: str, target: Path, flatten: bool) -> int:
    """Sparse, shallow clone of ``url`` keeping ``inside``; its audio files copied to ``target``
    (through ``<target>.partial``, renamed at the end)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--filter=blob:none", "--sparse", url, tmp],
                       check=True)
        subprocess.run(["git", "-C", tmp, "sparse-checkout", "set", inside], check=True)
        source = Path(tmp) / inside
        files = [p for p in source.rglob("*") if p.suffix.lower() in (".wav", ".flac")]
        partial = target.with_name(target.name + ".partial")  # renamed when whole: no half-filled target
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for path in files:
            dest = partial / (path.name if flatten else path.relative_to(source))
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        if target.is_dir():
            target.rmdir()  # empty (main skips non-empty targets)
        partial.rename(target)
        return len(files)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where an4/ and libri251/ go (the recipes expect ../extdata)")
    args = parser.parse_args(argv)
    for name, (url, inside, flatten) in SOURCES.items():
        target = args.folder / name
        if target.is_dir() and any(target.iterdir()):
            print(f"{target}: already there")
            continue
        try:
            count = fetch(url, inside, target, flatten)
        except (subprocess.CalledProcessError, OSError) as exc:
            print(f"error: {url}: {exc}", file=sys.stderr)
            return 1
        print(f"{target}: {count} files from {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
