"""Atomic file writes, stale temporary files and content hashes.

Every file this package writes goes through a temporary file beside its target, which is
moved into place only when complete (:func:`atomic_write`, :func:`atomic_path`):

- temporary names are short and fixed-length (``.gsbp-tmp-<16 hex>`` plus the target's
  suffix), so any target name the file system allows (up to 255 bytes) can be written;
- files are created with mode 0o666 filtered by the process umask (0644 under the usual
  umask 022), as ``open()`` would create them, never 0600;
- the writer holds an advisory lock (``flock``) on its temporary file until it is moved into
  place or removed; a temporary file that nobody holds locked was left by a process that
  died mid-write (kill -9, power loss) and :func:`remove_stale_temp_files` deletes it;
- ``overwrite=False`` refuses to replace an existing target, atomically (a hard link, which
  fails when the target exists; a check-then-rename where the file system has no links).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

#: Prefix of every temporary file this package creates (see :func:`remove_stale_temp_files`).
TEMP_PREFIX = ".gsbp-tmp-"
_MAX_TEMP_SUFFIX = 16


class FileExistsRefused(FileExistsError):
    """The target exists and the writer was asked not to overwrite it."""


def temp_name(target: str | Path) -> str:
    """A fresh temporary file name for ``target``: ``.gsbp-tmp-<16 hex><suffix>`` (at most
    42 characters, whatever the target's name)."""
    suffix = Path(target).suffix
    if len(suffix) > _MAX_TEMP_SUFFIX or not suffix[1:].isalnum():
        suffix = ".tmp"
    return f"{TEMP_PREFIX}{secrets.token_hex(8)}{suffix}"


def _create_temp(folder: Path, target: Path) -> tuple[int, Path]:
    """Create and lock a new temporary file in ``folder``: (fd, path). The mode is 0o666
    less the umask, as for any file a process creates."""
    for _ in range(100):
        tmp = folder / temp_name(target)
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)  # held until the file is in place or gone
        return fd, tmp
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(folder))


def _commit(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move ``tmp`` to ``path``; with ``overwrite`` False only if ``path`` does not exist."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic: fails if path exists
    except FileExistsError:
        raise FileExistsRefused(errno.EEXIST, "file exists", str(path)) from None
    except OSError as exc:  # no hard links here (some FUSE / SMB / vfat mounts)
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        if path.exists() or path.is_symlink():
            raise FileExistsRefused(errno.EEXIST, "file exists", str(path)) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", *, overwrite: bool = True) -> Iterator[IO]:
    """Write to a temporary file beside ``path`` and move it into place only on success.

    A crash or exception leaves any previous file untouched and no partial file behind (a
    killed process leaves its temporary file, which the next start removes, see
    :func:`remove_stale_temp_files`). With ``overwrite`` False an existing ``path`` raises
    :class:`FileExistsRefused` and is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path.parent, path)
    try:
        with os.fdopen(os.dup(fd), mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _commit(tmp, path, overwrite)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)  # releases the lock


def atomic_path(
    path: str | Path, *, overwrite: bool = True
) -> contextlib.AbstractContextManager[Path]:
    """Like :func:`atomic_write` for libraries that insist on writing a path themselves: yields
    the temporary path (an empty file that the library may replace or rewrite)."""
    return _atomic_path(Path(path), overwrite)


@contextlib.contextmanager
def _atomic_path(path: Path, overwrite: bool) -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path.parent, path)
    try:
        yield tmp
        _fsync_path(tmp)
        _commit(tmp, path, overwrite)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)


def _fsync_path(path: Path) -> None:
    with open(path, "rb+") as f:  # durable before it replaces the old file
        os.fsync(f.fileno())


def remove_stale_temp_files(folder: str | Path, *, recursive: bool = False) -> list[Path]:
    """Delete the temporary files of this package in ``folder`` that no live writer holds.

    A writer keeps its temporary file locked (``flock``) until it is in place; the kernel drops
    the lock when the process dies, however it dies. So an unlocked temporary file is debris
    of a killed write and can go. Returns the files removed. Missing folders are fine.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = f"**/{TEMP_PREFIX}*" if recursive else f"{TEMP_PREFIX}*"
    removed = []
    for tmp in folder.glob(pattern):
        try:
            fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:  # gone meanwhile, a symlink, unreadable: not ours to judge
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a live writer holds it
            os.close(fd)
            continue
        try:
            if os.path.samestat(os.fstat(fd), os.lstat(tmp)):
                os.unlink(tmp)
                removed.append(tmp)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
