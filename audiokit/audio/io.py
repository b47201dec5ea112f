"""Reading, writing and finding audio files (soundfile / libsndfile).

Waveforms are float32 arrays [channels, samples] in [-1, 1]; sample rates are in Hz.
Every problem with a file raises ``AudioError(path, problem)``.
"""
from __future__ import annotations

import errno
import glob
import os
import secrets
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import soundfile as sf

from audiokit.audio.resample import rate_problem
from audiokit.errors import AudioError

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".caf", ".w64", ".rf64"}
)


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read an audio file as (float32 array [channels, samples], sample rate in Hz).

    Raises AudioError for a missing file, a folder, a non-audio or truncated file,
    a file with zero samples, or one holding NaN/Inf samples.
    """
    path = Path(path)
    with open_audio(path) as f:
        declared, rate = f.frames, f.samplerate
        try:
            wav = f.read(dtype="float32", always_2d=True).T
        except (sf.LibsndfileError, RuntimeError) as exc:  # a compressed stream that breaks off
            raise AudioError(path, f"{TRUNCATED}: {exc}") from exc
    if wav.shape[1] < declared:
        raise AudioError(path, TRUNCATED)
    if wav.shape[1] == 0:
        raise AudioError(path, "contains no samples")
    if not np.isfinite(wav).all():
        raise AudioError(path, NOT_FINITE)
    return np.ascontiguousarray(wav), rate


TRUNCATED = "truncated (the file ends before the audio data its header declares)"
NOT_FINITE = "contains NaN or Inf samples"


def open_audio(path: str | os.PathLike) -> sf.SoundFile:
    """``path`` opened for reading (a ``soundfile.SoundFile``; close it, or use ``with``), after the checks
    every reader makes first: AudioError for a missing file, a folder, a non-audio or truncated file."""
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "no such file")
    if path.is_dir():
        raise AudioError(path, "is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(path, "is empty (0 bytes)")
    try:
        f = sf.SoundFile(path)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        detail = getattr(exc, "error_string", None) or str(exc)
        raise AudioError(path, f"not a readable audio file ({detail.strip().rstrip('.')})") from exc
    if _wav_is_truncated(path):
        f.close()
        raise AudioError(path, TRUNCATED)
    if (problem := rate_problem(f.samplerate)) is not None:
        f.close()
        raise AudioError(path, f"sample rate {problem}")
    return f


def _wav_is_truncated(path: Path) -> bool:
    """True when a RIFF/WAVE file's 'data' chunk declares more bytes than the file holds.

    (libsndfile silently reads what is there instead.) Other formats, and WAVs written by streaming
    tools with an unknown data size (0 or 0xFFFFFFFF), return False.
    """
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return False
        while len(chunk := f.read(8)) == 8:
            size = int.from_bytes(chunk[4:], "little")
            if chunk[:4] == b"data":
                return size not in (0, 0xFFFFFFFF) and f.tell() + size > path.stat().st_size
            f.seek(size + (size & 1), os.SEEK_CUR)
    return False


def temporary_path(path: Path) -> Path:
    """A hidden, unique name beside ``path`` to write it under before it is put in place; the
    stem is shortened so that a name near the file system's 255-byte limit still fits."""
    stem = path.stem.encode("utf-8", "surrogateescape")[:100].decode("utf-8", "ignore")  # the limit is in bytes
    return path.with_name(f".{stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")


#: what link(2) says on a file system without hard links (FAT, some network and FUSE file systems)
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS, errno.EXDEV})


def move_into_place(tmp: Path, target: Path, replace: bool) -> None:
    """Rename the finished file ``tmp`` to ``target`` (same folder). With ``replace`` an existing ``target`` is
    replaced (``os.replace``); without, it never is, even one that another process created a moment ago:
    FileExistsError, and ``tmp`` stays. The file is hard-linked under its new name, which fails when the name is
    taken, or, where the file system has no hard links, the name is claimed first (``O_EXCL``): of two runs
    writing one file at once, exactly one succeeds."""
    if replace:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # FileExistsError when taken
        try:
            os.replace(tmp, target)
        except BaseException:
            os.unlink(target)  # the empty claim
            raise
    else:
        os.unlink(tmp)


def write_audio(path: str | os.PathLike, wav, sample_rate: int, force: bool = False, subtype: str = "PCM_16") -> Path:
    """Write ``wav`` (array or tensor [channels, samples] or [samples], float in [-1, 1]) atomically.

    The data goes to a temporary file in the same folder, then :func:`move_into_place` puts it in place, so a
    failure never leaves a half-written file. Refuses to overwrite unless ``force`` (also a file that another
    process writes meanwhile). The format follows
    the extension; the default subtype is 16-bit PCM, for which floats are clipped to [-1, 1].
    Creates the parent folder. Returns the path written.
    """
    path = Path(path)
    if path.exists() and not force:
        raise AudioError(path, "exists, use --force")
    data = np.asarray(wav.detach().cpu() if hasattr(wav, "detach") else wav, dtype=np.float32)
    data = np.atleast_2d(data)
    if data.ndim != 2 or data.shape[1] == 0:
        raise AudioError(path, f"refusing to write audio of shape {tuple(data.shape)}, want [channels, samples]")
    if not np.isfinite(data).all():
        raise AudioError(path, "refusing to write NaN or Inf samples")
    if subtype.startswith("PCM"):
        data = np.clip(data, -1.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    # not mkstemp: its 0600 mode would stick to the result; sf.write creates the file with the umask
    tmp = temporary_path(path)
    try:
        sf.write(tmp, data.T, sample_rate, subtype=subtype, format=format_of(path))
        move_into_place(tmp, path, replace=force)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, FileExistsError):  # written meanwhile by another process
            raise AudioError(path, "exists, use --force") from None
        if isinstance(exc, (sf.LibsndfileError, RuntimeError, OSError, ValueError, TypeError)):
            raise AudioError(path, f"cannot write ({' '.join(str(exc).split())})") from exc
        raise
    return path


def format_of(path: Path) -> str:
    """libsndfile format name for ``path``'s extension (e.g. 'WAV', 'FLAC'; WAV without one); AudioError
    for an extension libsndfile cannot write."""
    ext = path.suffix.lower().lstrip(".")
    name = {"aif": "AIFF", "aifc": "AIFF", "oga": "OGG", "opus": "OGG", "": "WAV"}.get(ext, ext.upper())
    if name not in sf.available_formats():
        raise AudioError(path, f"cannot write .{ext} files (write .wav or .flac)")
    return name


def find_audio_files(
    inputs: Iterable[str | os.PathLike], on_missing: Callable[[AudioError], None] | None = None
) -> list[Path]:
    """Expand files, folders (recursively, by AUDIO_EXTENSIONS) and glob patterns into audio file paths.

    Order follows ``inputs`` (sorted within a folder or pattern), without repeats. An explicit file is
    kept whatever its extension, so that reading it reports what is wrong. An input that matches
    nothing is passed as an AudioError to ``on_missing`` (e.g. to print one error line and go on),
    or raised when ``on_missing`` is None.
    """
    found: dict[Path, None] = {}
    for item in inputs:
        text = os.fspath(item)
        if Path(text).is_file():
            matches = [Path(text)]
        elif Path(text).is_dir():
            matches = sorted(p for p in Path(text).rglob("*") if _is_audio(p))
        elif glob.has_magic(text):
            matches = sorted(p for p in map(Path, glob.glob(text, recursive=True)) if _is_audio(p))
        else:
            matches = []
        if not matches:
            problem = ("folder holds no audio files" if Path(text).is_dir()
                       else "no such file, folder or matching pattern")
            error = AudioError(text, problem)
            if on_missing is None:
                raise error
            on_missing(error)
        found.update(dict.fromkeys(matches))
    return list(found)


def _is_audio(path: Path) -> bool:
    """True for a file with an audio extension (hidden temp files of write_audio excluded)."""
    return path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")
