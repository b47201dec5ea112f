"""Writing motion files atomically, with the audio layer's machinery (:mod:`audiokit.audio.io`): each file goes
to a hidden temporary name beside its target (``temporary_path``), then is moved into place
(``move_into_place``), which never replaces a file that exists by then, not even one another run created a
moment ago, unless forced."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

from audiokit.audio.io import Placement, remove_temporary, temporary_path
from audiokit.errors import MotionFileError, os_reason

Writer = Callable[[Path], object]
"""Writes the whole file at the path it is given (a temporary name with the target's extension: tools such as
ffmpeg pick the format from it)."""


def replace_atomically(path: str | os.PathLike, write: Writer, force: bool = False) -> Path:
    """Call ``write(tmp)`` to write a temporary file beside ``path``, then move it to ``path``, so that a
    failure never leaves a half-written file. MotionFileError if ``path`` exists (unless ``force``) or the
    writing fails with an OSError. Creates the parent folder. Returns ``path``."""
    return write_together([(path, write)], force)[0]


def write_together(writes: Sequence[tuple[str | os.PathLike, Writer]], force: bool = False,
                   force_hint: str = "use --force", placement: Placement | None = None) -> list[Path]:
    """Write several files all or none: ``write(tmp)`` for each ``(path, write)`` in turn, each to a temporary
    file beside its path, then all moved into place. MotionFileError naming the file if a path is a folder or
    exists (unless ``force``; also one created meanwhile: ``exists, <force_hint>``), or a writing fails with an
    OSError; then the temporary files are deleted and the files this call placed taken back, except those that
    replaced a file under ``force`` (the old ones are gone). Creates the parent folders. Returns the paths.
    ``placement``: the files are put in place through it (to be withdrawn with other outputs of the run, e.g.
    ``OutputFiles.commit(placement)``); its ``replace`` then stands for ``force``."""
    paths = [Path(path) for path, _ in writes]
    for path in paths:
        if path.is_dir():
            raise MotionFileError(path, "is a folder")
        if path.exists() and not force:
            raise MotionFileError(path, f"exists, {force_hint}")
    temporaries: list[Path] = []
    placement = Placement(replace=force) if placement is None else placement
    path = paths[0] if paths else None
    try:
        for path, (_, write) in zip(paths, writes):
            _make_folder(path)
            temporaries.append(temporary_path(path))
            write(temporaries[-1])
        for path, tmp in zip(paths, temporaries):
            placement.place(tmp, path)
    except BaseException as exc:
        placement.withdraw()
        for tmp in temporaries:
            remove_temporary(tmp)
        if isinstance(exc, FileExistsError):  # created meanwhile by another run
            raise MotionFileError(path, f"exists, {force_hint}") from None
        if isinstance(exc, OSError):
            raise MotionFileError(path, f"cannot write ({os_reason(exc)})") from exc
        raise
    return paths


def check_writable(paths: Sequence[str | os.PathLike]) -> None:
    """MotionFileError for the first of ``paths`` that cannot be written now: its folder cannot be made, or no file
    can be created in it (a read-only file system, permission denied, a file standing for a folder). Found by
    making the folder and a temporary file in it, both removed again; for outputs written at the end of a long
    run (a stream), so that this is said at its start. (A disk that fills up meanwhile is said at the end.)"""
    for path in map(Path, paths):
        missing, folder = [], path.parent
        while not os.path.lexists(folder) and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        made: list[Path] = []
        try:
            for folder in reversed(missing):
                folder.mkdir()
                made.append(folder)
        except OSError as exc:
            _remove(made)
            raise MotionFileError(path, f"cannot create its folder ({os_reason(exc)})") from exc
        tmp = temporary_path(path)
        try:
            open(tmp, "xb").close()
            tmp.unlink()
        except OSError as exc:
            raise MotionFileError(path, f"cannot write ({os_reason(exc)})") from exc
        finally:
            _remove(made)


def _remove(folders: list[Path]) -> None:
    """Remove the (empty) ``folders`` made, the deepest first."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            break


def _make_folder(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MotionFileError(path, f"cannot create its folder ({os_reason(exc)})") from exc
