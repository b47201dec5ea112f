"""Writing files atomically: to a hidden temporary name beside the target, then ``os.replace``."""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Callable

from audiokit.errors import MotionFileError


def temporary_path(path: Path) -> Path:
    """A hidden, unique name beside ``path`` with the same extension (tools such as ffmpeg pick the format
    from it); the stem is shortened so that a name near the file system's 255-byte limit still fits."""
    stem = path.stem.encode("utf-8", "surrogateescape")[:100].decode("utf-8", "ignore")
    return path.with_name(f".{stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")


def replace_atomically(path: str | os.PathLike, write: Callable[[Path], object], force: bool = False) -> Path:
    """Call ``write(tmp)`` to write a temporary file beside ``path``, then rename it to ``path``, so that a
    failure never leaves a half-written file. MotionFileError if ``path`` exists (unless ``force``) or the
    writing fails with an OSError. Creates the parent folder. Returns ``path``."""
    path = Path(path)
    if path.is_dir():
        raise MotionFileError(path, "is a folder")
    if path.exists() and not force:
        raise MotionFileError(path, "exists, use --force")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MotionFileError(path, f"cannot create its folder ({exc.strerror or exc})") from exc
    tmp = temporary_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise MotionFileError(path, f"cannot write ({exc.strerror or exc})") from exc
        raise
    return path
