"""Errors that audiokit raises on bad input; the CLI prints them as one line, never a traceback.

Every layer raises these (or subclasses) for problems a user can fix; anything else is a bug.
"""
from __future__ import annotations

from os import PathLike


class AudiokitError(Exception):
    """Base of all user-facing audiokit errors; ``str(e)`` is one line."""


class FileError(AudiokitError):
    """A problem with one file; ``str(e)`` is ``"<path>: <problem>"``."""

    def __init__(self, path: str | PathLike, problem: str):
        self.path, self.problem = path, problem
        super().__init__(f"{path}: {problem}")


class AudioError(FileError, ValueError):
    """An audio file is missing, unreadable, truncated, empty or holds NaN/Inf, or can't be written."""


class MotionError(AudiokitError, ValueError):
    """Motion data (joint positions, a skeleton, a BVH) is malformed: wrong shape, NaN/Inf, too short."""


class MotionFileError(FileError, MotionError):
    """A motion file or dance folder (skeleton JSON, config, BVH, a rendered video) is missing, unreadable,
    malformed, or can't be written."""


class CheckpointError(FileError):
    """A checkpoint file is missing, unreadable or does not fit the model."""


class ModelError(AudiokitError):
    """A model name is unknown, a model can't be built, or its input/output is malformed."""


class ModelKindError(ModelError):
    """A model of another kind than the job needs (a separator given to enhance, or the reverse); the
    command line puts the model's name in front of it."""


def one_line(exc: BaseException, path: str | PathLike | None = None) -> str:
    """``exc`` as one line for ``error: ...`` messages.

    A FileError already names its own file; any other exception is prefixed with ``path`` (when given)
    and, unless it is an AudiokitError, with its type name so that bugs stay recognisable.
    """
    text = " ".join(str(exc).split()) or "(no message)"
    if isinstance(exc, FileError):
        return text
    if not isinstance(exc, AudiokitError):
        text = f"{type(exc).__name__}: {text}"
    return f"{path}: {text}" if path is not None else text


def os_reason(exc: BaseException) -> str:
    """The plain cause of an OS error, e.g. "permission denied", "no space left on device", "read-only file
    system" (its ``strerror``; the whole message, on one line, for other exceptions)."""
    reason = getattr(exc, "strerror", None) or " ".join(str(exc).split()) or type(exc).__name__
    return reason[:1].lower() + reason[1:]
