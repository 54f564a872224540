"""Atomic file writes: nothing half-written is left behind after a failure.

A write that fails because the disk is full, the folder read-only or not ours ends in a
:class:`WriteError` naming the file and the cause in one line, which the command line and
the rule scripts print instead of a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: Causes of a failed write that the user, not the code, has to fix.
WRITE_FAILURES = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
# Libraries that hide the errno (HDF5, Arrow, OpenCV) still say it in their message.
_FAILURE_TEXTS = {
    "no space left on device": errno.ENOSPC,
    "errno = 28": errno.ENOSPC,
    "disk quota exceeded": errno.EDQUOT,
    "read-only file system": errno.EROFS,
    "permission denied": errno.EACCES,
}


class WriteError(OSError):
    """A file could not be written; ``str()`` is one line: the file and the cause."""

    def __str__(self) -> str:
        return f"{self.filename}: cannot write: {self.strerror}"


def write_failure(exc: BaseException | None) -> int | None:
    """The errno (a key of ``WRITE_FAILURES``) behind ``exc`` or the exceptions it came from."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError):
            if exc.errno in WRITE_FAILURES:
                return exc.errno
            text = str(exc).lower()
            for fragment, code in _FAILURE_TEXTS.items():
                if fragment in text:
                    return code
        exc = exc.__cause__ or exc.__context__
    return None


def write_failure_message(exc: BaseException) -> str | None:
    """One line naming the file and the cause of a failed write, or None for other errors."""
    if isinstance(exc, WriteError):
        return str(exc)
    code = write_failure(exc)
    if code is None:
        return None
    filename = getattr(exc, "filename", None)
    return f"{filename or 'a file'}: cannot write: {WRITE_FAILURES[code]}"


def _remove_quietly(path: Path) -> None:
    """Remove a temporary file or folder; on a read-only or full disk that may fail too."""
    with contextlib.suppress(OSError):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _folder_state(folder: Path) -> int | None:
    """ENOSPC or EROFS when the folder's file system is full or read-only, else None.

    For writers that only say they failed (``cv2.imwrite`` returns False): asked while
    their partial file still takes its space.
    """
    try:
        stats = os.statvfs(folder)
    except OSError:
        return None
    if stats.f_flag & os.ST_RDONLY:
        return errno.EROFS
    if stats.f_bavail * stats.f_frsize < 64 * 1024:
        return errno.ENOSPC
    return None


def _as_write_error(exc: OSError, final: Path, code: int | None = None) -> OSError:
    code = code or write_failure(exc)
    if code is None or isinstance(exc, WriteError):
        return exc
    return WriteError(code, WRITE_FAILURES[code], str(final))


@contextlib.contextmanager
def atomic_path(final: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` on success.

    The temporary file (or folder) lives in the same directory so the rename is atomic
    on POSIX file systems. On any exception the temporary is removed and ``final`` is
    left untouched. ``suffix`` defaults to the suffix of ``final`` (some writers, such as
    OpenCV's, choose the format from it).
    """
    final = Path(final)
    suffix = final.suffix if suffix is None else suffix
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".part{suffix}",
                                    dir=final.parent)
    except OSError as exc:
        raise _as_write_error(exc, final) from exc
    os.close(fd)
    tmp = Path(name)
    tmp.unlink()  # writers create it themselves (some refuse an existing file)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to {final}")
        os.replace(tmp, final)
    except OSError as exc:
        code = write_failure(exc) or _folder_state(final.parent)
        _remove_quietly(tmp)
        error = _as_write_error(exc, final, code)
        if error is exc:
            raise
        raise error from exc
    except BaseException:
        _remove_quietly(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; it replaces ``final`` on success."""
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent))
    except OSError as exc:
        raise _as_write_error(exc, final) from exc
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except OSError as exc:
        _remove_quietly(tmp)
        error = _as_write_error(exc, final)
        if error is exc:
            raise
        raise error from exc
    except BaseException:
        _remove_quietly(tmp)
        raise


def write_text_atomic(final: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes_atomic(final: str | Path, data: bytes) -> None:
    """Write a binary file atomically (a full disk raises ``WriteError``, never half a file)."""
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def write_png_atomic(final: str | Path, image) -> None:
    """Encode an image as PNG in memory, then write it atomically.

    ``cv2.imwrite`` only returns False when the disk is full; encoding first and writing
    with Python turns that into a ``WriteError`` that says why.
    """
    import cv2

    ok, buffer = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"{final}: the image cannot be encoded as PNG")
    write_bytes_atomic(final, buffer.tobytes())
