"""Reading, writing and finding audio files (soundfile / libsndfile).

Waveforms are float32 arrays [channels, samples] in [-1, 1]; sample rates are in Hz.
Every problem with a file raises ``AudioError(path, problem)``.
"""
from __future__ import annotations

import errno
import glob
import os
import secrets
import stat
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import soundfile as sf

from audiokit.audio.resample import rate_problem
from audiokit.errors import AudioError, os_reason

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
OGG_TRUNCATED = "truncated (the file ends before its Ogg stream does)"
NOT_FINITE = "contains NaN or Inf samples"


def open_audio(path: str | os.PathLike) -> sf.SoundFile:
    """``path`` opened for reading (a ``soundfile.SoundFile``; close it, or use ``with``), after the checks
    every reader makes first: AudioError for a missing file, a folder, a non-audio or truncated file."""
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "is a symbolic link to nothing (broken, or a loop)" if path.is_symlink()
                         else "no such file")
    if path.is_dir():
        raise AudioError(path, "is a folder, not an audio file")
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):  # reading a FIFO or a device could wait, or go on, forever
            raise AudioError(path, f"not a regular file (a {file_kind(mode)})")
        if path.stat().st_size == 0:
            raise AudioError(path, "is empty (0 bytes)")
        with open(path, "rb"):  # the cause of a failure (permission denied, ...), which libsndfile does not give
            pass
    except OSError as exc:
        raise AudioError(path, f"cannot be read ({os_reason(exc)})") from None
    if _ogg_is_truncated(path):  # (before the decoder, which calls a cut Ogg stream "malformed", if anything)
        raise AudioError(path, OGG_TRUNCATED)
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


def file_kind(mode: int) -> str:
    """What a file that is not a regular file is, from its ``st_mode``."""
    kinds = {stat.S_ISFIFO: "FIFO", stat.S_ISCHR: "character device", stat.S_ISBLK: "block device",
             stat.S_ISSOCK: "socket"}
    return next((name for test, name in kinds.items() if test(mode)), "special file")


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


def _ogg_is_truncated(path: Path) -> bool:
    """True when an Ogg file (Vorbis, Opus, FLAC in Ogg) breaks off: its last page is cut short, or the last
    whole page does not close its stream (no end-of-stream flag).

    (libsndfile then silently reads what is there, and reports that as the length.) The pages are walked from
    the start by their headers (27 bytes and a segment table each), without reading their contents; a file
    whose pages stop making sense before the end (not Ogg, or damaged inside) is left to the decoder: False.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        if f.read(4) != b"OggS":
            return False
        offset, flags = 0, 0
        while offset < size:
            f.seek(offset)
            header = f.read(27)
            if len(header) < 27:
                return b"OggS".startswith(header[:4])  # a page header cut off
            if header[:4] != b"OggS" or header[4] != 0:
                return False
            table = f.read(header[26])
            if len(table) < header[26]:
                return True
            flags, offset = header[5], offset + 27 + len(table) + sum(table)
        return offset > size or not flags & 0x04  # the last page cut short, or not the end of its stream


def temporary_path(path: Path) -> Path:
    """A hidden, unique name beside ``path`` to write it under before it is put in place; the
    stem is shortened so that a name near the file system's 255-byte limit still fits."""
    stem = path.stem.encode("utf-8", "surrogateescape")[:100].decode("utf-8", "ignore")  # the limit is in bytes
    return path.with_name(f".{stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")


def remove_temporary(path: Path) -> None:
    """Delete the temporary file ``path`` if it is there. An OSError is let go: a file system that refuses even
    that (e.g. read-only) had nothing made on it, or leaves nothing more to do."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


class _Sink:
    """A new binary file that libsndfile writes through (soundfile's virtual I/O). A failed write keeps its
    ``OSError`` in ``error`` (libsndfile, writing a file itself, says only "System error") and tells libsndfile
    that nothing was written."""

    def __init__(self, path: Path):
        self.file = open(path, "xb", buffering=0)  # unbuffered: a write fails where it is made, not later
        self.error: OSError | None = None

    def write(self, data) -> int:
        view, done = memoryview(data), 0
        try:
            while done < len(view) and (count := self.file.write(view[done:])):
                done += count
        except OSError as exc:
            self.error = self.error or exc
        return done

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self.file.seek(offset, whence)

    def tell(self) -> int:
        return self.file.tell()


class AudioWriter:
    """A new audio file at ``path`` (created, never replaced), written block by block by libsndfile: ``write``
    ``[n]`` or ``[n, C]`` float samples, then ``close``. Any failure is an AudioError naming ``target`` (the
    final name, by default ``path``) with its cause: "cannot be written (no space left on device)",
    "(permission denied)", "(read-only file system)", ...; a file that could not be created is not left behind
    (a half-written one is the caller's to delete, e.g. by :func:`temporary_path` and rename). ``software``: the
    file's ``software`` string, where its format keeps one."""

    def __init__(self, path: Path, rate: int, channels: int, subtype: str = "PCM_16",
                 target: Path | None = None, software: str | None = None):
        self.name, self.target = Path(path), Path(target or path)
        kind = format_of(self.target)
        try:
            self._sink = _Sink(self.name)
        except OSError as exc:
            problem = "its folder is not a folder" if exc.errno == errno.ENOTDIR else "cannot be written"
            raise AudioError(self.target, f"{problem} ({os_reason(exc)})") from None
        try:
            self._sound = sf.SoundFile(self._sink, "w", rate, channels, subtype, format=kind)
        except BaseException as exc:
            self._sink.file.close()
            self.name.unlink(missing_ok=True)
            self._fail(exc)
        if software is not None:
            try:
                self._sound.software = software
            except (sf.LibsndfileError, RuntimeError):
                pass  # a format without such strings

    def _fail(self, exc: BaseException):
        """AudioError for ``exc`` naming the target, with the OS's cause when a write had one."""
        if self._sink.error is None and not isinstance(exc, (sf.LibsndfileError, OSError, RuntimeError,
                                                             AssertionError, ValueError, TypeError)):
            raise exc
        raise AudioError(self.target, f"cannot be written ({os_reason(self._sink.error or exc)})") from None

    def write(self, samples: np.ndarray) -> None:
        try:
            self._sound.write(samples)
        except BaseException as exc:
            self._fail(exc)
        if self._sink.error is not None:  # (libsndfile may take a short write quietly)
            self._fail(self._sink.error)

    def close(self) -> None:
        """Complete the file (its header is written now) and close it; may be called again."""
        try:
            self._sound.close()
        except BaseException as exc:
            self._fail(exc)
        finally:
            self._sink.file.close()
        if self._sink.error is not None:
            self._fail(self._sink.error)

    @property
    def closed(self) -> bool:
        return self._sink.file.closed


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


def file_identity(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(device, inode)`` of the file ``path`` names (through links), None when there is none: the same for
    every spelling of one file, symlinks and hard links included."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


class Placement:
    """Finished files put in place one after another (:func:`move_into_place`), so that the outputs of one input
    are placed all or none: when one cannot be, :meth:`withdraw` deletes those this object placed, except any
    that replaced a file (``replace``: the old one is gone) or that another run has replaced meanwhile."""

    def __init__(self, replace: bool):
        self.replace = replace
        self.placed: list[tuple[Path, tuple[int, int] | None]] = []

    def place(self, tmp: Path, target: Path) -> None:
        """Move ``tmp`` to ``target`` (see :func:`move_into_place`: FileExistsError without ``replace``)."""
        identity = file_identity(tmp)
        move_into_place(tmp, target, self.replace)
        self.placed.append((target, identity))

    def withdraw(self) -> None:
        """Delete the files placed so far (see the class docstring)."""
        placed, self.placed = self.placed, []
        if self.replace:
            return
        for target, identity in placed:
            if file_identity(target) == identity:
                try:
                    target.unlink(missing_ok=True)
                except OSError:
                    pass  # (a file system that became read-only: nothing more can be done)


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
    format_of(path)  # an extension that cannot be written: said before anything is made
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AudioError(path, f"cannot be written ({os_reason(exc)})") from None
    # not mkstemp: its 0600 mode would stick to the result; open() creates the file with the umask
    tmp = temporary_path(path)
    try:
        writer = AudioWriter(tmp, sample_rate, data.shape[0], subtype, target=path)
        try:
            writer.write(data.T)
        finally:
            writer.close()
        move_into_place(tmp, path, replace=force)
    except BaseException as exc:
        remove_temporary(tmp)
        if isinstance(exc, FileExistsError):  # written meanwhile by another process
            raise AudioError(path, "exists, use --force") from None
        if isinstance(exc, OSError):
            raise AudioError(path, f"cannot be written ({os_reason(exc)})") from None
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


#: what ``-`` as an input file name gets (it is no file; standard input is not read)
STDIN_REFUSED = "not a regular file (standard input is not read: name the audio file)"


def find_audio_files(
    inputs: Iterable[str | os.PathLike], on_missing: Callable[[AudioError], None] | None = None
) -> list[Path]:
    """Expand files, folders (recursively, by AUDIO_EXTENSIONS) and glob patterns into audio file paths.

    Order follows ``inputs`` (sorted within a folder or pattern), and each file comes once, under the first name
    it was reached by: names that lead to one file (``a.wav``, ``./x/../a.wav``, a symbolic link to it) are one
    input. Symbolic links to folders are not followed inside a folder or a ``**`` pattern, so a link loop is
    never walked. An explicit name is kept whatever it is (an extension other than audio, a FIFO, a device), so
    that reading it reports what is wrong. An input that matches nothing, ``-`` (standard input is not read),
    and a subfolder that cannot be listed are passed as an AudioError to ``on_missing`` (e.g. to print one
    error line and go on), or raised when ``on_missing`` is None.
    """
    def report(error: AudioError) -> None:
        if on_missing is None:
            raise error
        on_missing(error)

    found: dict[str, Path] = {}  # real path -> the first name it was reached by
    for item in inputs:
        text = os.fspath(item)
        path = Path(text)
        unreadable: list[AudioError] = []
        if text == "-":
            report(AudioError(text, STDIN_REFUSED))
            continue
        if path.is_dir():
            matches = sorted(p for p in _files_under(path, unreadable.append) if _is_audio(p))
        elif os.path.lexists(text):  # a file, a FIFO, a device, a broken link: reading it says which
            matches = [path]
        elif glob.has_magic(text):
            matches = sorted(p for p in _glob(text) if _is_audio(p))
        else:
            matches = []
        for error in unreadable:
            report(error)
        if not matches and not (unreadable and unreadable[0].path == path):  # (an unreadable folder: said)
            report(AudioError(text, "folder holds no audio files" if path.is_dir()
                              else "no such file, folder or matching pattern"))
        for match in matches:
            found.setdefault(os.path.realpath(match), match)
    return list(found.values())


def _files_under(folder: Path, on_error: Callable[[AudioError], None]) -> Iterable[Path]:
    """Every file under ``folder`` (symbolic links to folders not followed); a folder that cannot be listed is
    passed to ``on_error``."""
    def unlistable(exc: OSError) -> None:
        on_error(AudioError(exc.filename or folder, f"folder cannot be read ({os_reason(exc)}); its files are "
                                                    "not processed"))

    for parent, _, names in os.walk(folder, onerror=unlistable):
        yield from (Path(parent) / name for name in names)


def _glob(pattern: str) -> Iterable[Path]:
    """What glob ``pattern`` matches (``**``: any folders), without following symbolic links to folders under
    ``**`` (``glob.glob`` does, and walks a link loop until the path is too long)."""
    parts = Path(pattern).parts
    fixed = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    root = Path(*parts[:fixed]) if fixed else Path()
    return (p for p in root.glob(str(Path(*parts[fixed:]))) if not p.name.startswith("."))


def _is_audio(path: Path) -> bool:
    """True for a file with an audio extension (hidden temp files of write_audio excluded)."""
    return path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")
