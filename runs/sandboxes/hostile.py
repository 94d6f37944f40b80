"""Reading what a sandbox wrote: the only way the host side opens anything in a tree a sandbox can write.

Everything under a sandbox's workspace (``/app``: results, working files) is hostile input, links and races
included. The agent may replace any file or folder by a link to a host file at any moment, plant hard links, FIFOs
or device nodes, or rename folders while the host walks them; the worker reads as root, so following any of these
would hand a host file to the tenant (issue 14, findings 1 and 8). Here every path component is opened relative to
the descriptor of its parent folder with ``O_NOFOLLOW``, and checked with ``fstat`` once open: regular files with a
single link, on the tree's own filesystem, under a size cap. Nothing is followed and nothing outside the tree is
reached, whatever the agent does meanwhile. An entry that vanished, was swapped, or is refused is skipped (``walk``)
or reported as ``Unreadable`` (``read``), never raised as another error: a tree that changes under the reader is
the agent's doing, not a fault of ours. Errors a hostile tree cannot cause (EMFILE, EIO) still propagate.

The anchor (``root``) is a folder the platform made and the sandbox cannot replace (the workspace is a mount point
inside the sandbox); every path below it is taken relative to it.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in between the look and the open must not hang the worker.
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_DEPTH = 64
CHUNK = 1024 * 1024

MISSING = "missing"
LINK = "a link"
NOT_A_FOLDER = "not a folder"
SPECIAL = "not a regular file"
HARD_LINK = "a hard link"
OTHER_FILESYSTEM = "on another filesystem"
TOO_LARGE = "over its size limit"
CHANGED = "changed while it was read"
DENIED = "not readable"
NOT_UTF8 = "named in bytes that are not UTF-8"

# What a hostile tree can make an open or stat fail with: the entry is skipped or reported, the host carries on.
HOSTILE_ERRNOS = {
    errno.ENOENT: MISSING,
    errno.ELOOP: LINK,  # O_NOFOLLOW met a link
    errno.ENOTDIR: NOT_A_FOLDER,  # a folder swapped for a file or a link
    errno.EISDIR: SPECIAL,
    errno.ENXIO: SPECIAL,  # a socket, or a FIFO opened for writing
    errno.ENODEV: SPECIAL,
    errno.EOPNOTSUPP: SPECIAL,
    errno.EACCES: DENIED,  # a worker that is not root, on a file the agent made unreadable
    errno.EPERM: DENIED,
    errno.EXDEV: OTHER_FILESYSTEM,  # raised here for a folder on another filesystem
}


class Source(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class Unreadable(Exception):
    """An entry of a sandbox's tree the host did not read, and why (for the run's log)."""

    def __init__(self, path: str, reason: str, detail: str = ""):
        super().__init__(f"{path} {'' if reason == CHANGED else 'is '}{detail or reason}")
        self.path, self.reason = path, reason

    @property
    def missing(self) -> bool:
        return self.reason == MISSING


@dataclass(frozen=True)
class Entry:
    """A non-folder entry met by ``walk``: its path relative to the walked folder, its size and time as ``lstat``
    saw them, and why it will not be read (None for a regular file with one link)."""

    path: str
    size: int
    mtime_ns: int
    refused: str | None = None


def _parts(relative: str) -> list[str]:
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{relative!r} is not a relative path inside the tree")
    return [part for part in path.parts if part != "."]


def _hostile(exc: OSError) -> str | None:
    return HOSTILE_ERRNOS.get(exc.errno) if exc.errno is not None else None


def _refusal(st: os.stat_result, device: int) -> str | None:
    """Why a file with this (l)stat is not read, or None."""
    if stat.S_ISLNK(st.st_mode):
        return LINK
    if not stat.S_ISREG(st.st_mode):
        return SPECIAL
    if st.st_nlink > 1:  # a hard link to a file elsewhere is that file
        return HARD_LINK
    if st.st_dev != device:
        return OTHER_FILESYSTEM
    return None


def _open_folder(name: str, parent: int, device: int) -> int:
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=parent)
    except NotADirectoryError:
        # O_DIRECTORY speaks first on a link: say it was one, for the run's log.
        if stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
            raise OSError(errno.ELOOP, "a link") from None
        raise
    if os.fstat(fd).st_dev != device:
        os.close(fd)
        raise OSError(errno.EXDEV, "crosses into another filesystem")
    return fd


@contextmanager
def _folder(root: Path, parts: list[str]) -> Iterator[tuple[int, int]]:
    """(descriptor, device) of ``root/parts...``, each component opened in the one before without following links."""
    fd = os.open(root, DIR_FLAGS)
    try:
        device = os.fstat(fd).st_dev
        for part in parts:
            child = _open_folder(part, fd, device)
            os.close(fd)
            fd = child
        yield fd, device
    finally:
        os.close(fd)


def read(root: Path, relative: str, limit: int) -> bytes:
    """The bytes of the regular file ``root/relative`` (at most ``limit``), read without following any link.

    Raises ``Unreadable`` when it is missing, a link (anywhere on its path), not a regular file, a hard link, on
    another filesystem, over ``limit`` bytes, or swapped while it was opened.
    """
    parts = _parts(relative)
    if not parts:
        raise Unreadable(relative, SPECIAL)
    try:
        with _folder(root, parts[:-1]) as (folder, device):
            before = os.stat(parts[-1], dir_fd=folder, follow_symlinks=False)
            # Look first: a device node or FIFO is refused before it is ever opened.
            refused = _refusal(before, device)
            if refused is None and before.st_size > limit:
                raise Unreadable(relative, TOO_LARGE, f"over {limit} bytes")
            if refused:
                raise Unreadable(relative, refused)
            fd = os.open(parts[-1], FILE_FLAGS, dir_fd=folder)
            try:
                opened = os.fstat(fd)
                if (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino):
                    raise Unreadable(relative, CHANGED)
                refused = _refusal(opened, device)
                if refused:
                    raise Unreadable(relative, refused)
                return _read_capped(fd, relative, limit)
            finally:
                os.close(fd)
    except OSError as exc:
        reason = _hostile(exc)
        if reason is None:
            raise
        raise Unreadable(relative, reason) from exc


def _read_capped(fd: int, relative: str, limit: int) -> bytes:
    chunks, total = [], 0
    while chunk := os.read(fd, min(CHUNK, limit + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:  # it grew after the look
            raise Unreadable(relative, TOO_LARGE, f"over {limit} bytes")
    return b"".join(chunks)


def walk(root: Path, under: str = "", *, exclude: Collection[str] = ()) -> Iterator[Entry]:
    """Every non-folder entry below ``root/under``, depth first in name order, paths relative to ``under``.

    Folders are entered only through descriptors opened without following links and on the tree's filesystem, so
    the walk never leaves the tree; a folder that vanished or was swapped meanwhile is skipped with what it held.
    ``exclude`` names folders (relative to ``under``) not to enter. Links and special files are listed with their
    refusal; nothing here opens a file.
    """
    try:
        with _folder(root, _parts(under)) as (fd, device):
            yield from _walk(fd, "", device, frozenset(exclude), 0)
    except OSError as exc:
        if _hostile(exc) is None:
            raise


def _walk(fd: int, prefix: str, device: int, exclude: frozenset[str], depth: int) -> Iterator[Entry]:
    try:
        names = sorted(os.listdir(fd))
    except OSError as exc:
        if _hostile(exc) is None:
            raise
        return
    for name in names:
        path = prefix + name
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError as exc:
            if _hostile(exc) is None:
                raise
            continue
        if not _utf8(name):  # no row, log or page could hold the name: listed, never read or entered
            yield Entry(_shown(path), st.st_size, st.st_mtime_ns, NOT_UTF8)
            continue
        if not stat.S_ISDIR(st.st_mode):
            yield Entry(path, st.st_size, st.st_mtime_ns, _refusal(st, device))
            continue
        if path in exclude or depth >= MAX_DEPTH:
            continue
        try:
            child = _open_folder(name, fd, device)
        except OSError as exc:
            if _hostile(exc) is None:
                raise
            continue
        try:
            yield from _walk(child, path + "/", device, exclude, depth + 1)
        finally:
            os.close(child)


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:  # os.listdir gives undecodable bytes back as lone surrogates
        return False


def _shown(path: str) -> str:
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def tree_bytes(root: Path) -> int:
    """How many bytes the files below ``root`` hold (as ``lstat`` sees them; links count as themselves)."""
    return sum(entry.size for entry in walk(root))


def write(root: Path, relative: str, source: Source) -> None:
    """Write ``source`` to a new file ``root/relative``, making its folders, without following any link: what is
    in the way (a file, a link) is replaced, never written through."""
    parts = _parts(relative)
    if not parts:
        raise ValueError("nothing to write to")
    fd = os.open(root, DIR_FLAGS)
    try:
        device = os.fstat(fd).st_dev
        for part in parts[:-1]:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            child = _open_folder(part, fd, device)
            os.close(fd)
            fd = child
        try:
            os.unlink(parts[-1], dir_fd=fd)
        except FileNotFoundError:
            pass
        out = os.open(parts[-1], WRITE_FLAGS, 0o644, dir_fd=fd)
        with os.fdopen(out, "wb") as handle:
            while chunk := source.read(CHUNK):
                handle.write(chunk)
    finally:
        os.close(fd)
