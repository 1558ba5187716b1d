"""Files and folders written whole or not at all: a new file is written beside its target and
renamed over it in one step, so a failed write (a full disk, an interrupted process) leaves the
old file as it was, and a reader never sees half a file. A folder is written complete beside its
target and swapped with it in one step (:func:`swap_folder`)."""

import ctypes
import errno
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(target: str | Path) -> Iterator[Path]:
    """A new temporary file's path beside ``target`` (the same file system, so the rename is
    atomic; the folder is made if missing) to write into. When the block ends without error the
    file replaces ``target``; otherwise it is removed and ``target`` is untouched. The file gets
    :func:`new_file_mode`."""
    target = Path(target)
    if target.is_dir():
        raise IsADirectoryError(f"{target} is a folder; give the path of a file to write")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        raise NotADirectoryError(f"cannot write {target}: part of its folder's path is a file "
                                 f"({error.strerror}: {error.filename})") from None
    try:
        descriptor, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                            suffix=".partial")
    except OSError as error:  # it would name the temporary file, which the user never asked for
        raise OSError(f"cannot write {target} ({error.strerror} in {target.parent})") from None
    os.close(descriptor)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, new_file_mode())  # mkstemp's 0600 would hide the file from others
        os.replace(temporary, target)
    except OSError as error:  # e.g. a full disk: say which file, and that it is intact
        state = "left as it was" if target.exists() else "not written"
        raise OSError(f"cannot write {target} ({error.strerror or error}); it was {state}"
                      ) from error
    finally:
        temporary.unlink(missing_ok=True)


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the process umask (0o644 under the usual
    022), which saved files get so that a shared or served folder is readable as any other.

    Python can read the umask only by setting it; it is set to 0o077 for that instant, so a file
    another thread creates meanwhile is at worst private, never world-writable."""
    umask = os.umask(0o077)
    os.umask(umask)
    return 0o666 & ~umask


def staging_folder(target: Path) -> tempfile.TemporaryDirectory:
    """An empty temporary folder on ``target``'s file system, to write a folder's files into
    before moving them in: beside the folder ``target``, or inside it where only the folder
    itself is writable. Removed with whatever is left in it when its ``with`` block ends."""
    names = {"prefix": f".{target.name}.", "suffix": ".partial", "ignore_cleanup_errors": True}
    try:
        return tempfile.TemporaryDirectory(dir=target.parent, **names)
    except OSError as error:
        if target.is_dir():
            try:
                return tempfile.TemporaryDirectory(dir=target, **names)
            except OSError:
                pass
        raise OSError(f"cannot write the folder {target} ({error.strerror} in "
                      f"{target.parent}); choose a folder you can write to") from None


RENAME_EXCHANGE = 2
AT_FDCWD = -100
"""renameat2's flag that swaps two paths, and its "relative to the working folder" (Linux)."""


def exchange(first: Path, second: Path) -> bool:
    """Swap the two existing paths ``first`` and ``second`` in one step (Linux's ``renameat2``
    with ``RENAME_EXCHANGE``): a reader or a crash sees one or the other, never neither. False,
    with nothing changed, where the system or the file system cannot."""
    if sys.platform != "linux":
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:  # a C library older than glibc 2.28
        return False
    if renameat2(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second),
                 RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(first), None, str(second))


def swap_folder(new: Path, target: Path) -> None:
    """Put the complete folder ``new`` (a sibling of ``target``) at ``target``; afterwards the
    path ``new`` holds the previous folder (or nothing), for the caller to remove.

    Where ``target`` exists the two are exchanged in one step (:func:`exchange`), so a crash at
    any point leaves ``target`` the old folder or the new one, whole. Where the file system
    cannot exchange, ``target`` is renamed aside and ``new`` renamed in: a crash between these
    two renames leaves the old folder at ``new`` + ``.old``."""
    _sync_folder(new)
    if not os.path.lexists(target):
        os.rename(new, target)
    elif not exchange(new, target):
        aside = new.with_name(new.name + ".old")
        os.rename(target, aside)
        os.rename(new, target)
        os.rename(aside, new)
    _sync(target.parent)


def _sync_folder(folder: Path) -> None:
    """Flush the files of ``folder`` and the folder itself to disk, so that a power cut after
    the swap cannot leave the new folder's files empty."""
    for path in folder.iterdir():
        if path.is_file() and not path.is_symlink():
            _sync(path)
    _sync(folder)


def _sync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def carry_over(old: Path, new: Path, names: list[str]) -> None:
    """Hard-link (else copy) the entries ``names`` of the folder ``old`` into ``new``, symlinks
    as symlinks: the files a folder swap keeps that are not its own."""
    for name in names:
        source, destination = old / name, new / name
        if source.is_dir() and not source.is_symlink():
            shutil.copytree(source, destination, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(source, destination)


def _link_or_copy(source: str | Path, destination: str | Path) -> None:
    if os.path.islink(source):
        os.symlink(os.readlink(source), destination)
        return
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
