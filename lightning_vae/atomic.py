"""Files written whole or not at all: a new file is written beside its target and renamed over
it in one step, so a failed write (a full disk, an interrupted process) leaves the old file as
it was, and a reader never sees half a file."""

import os
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
    names = {"prefix": f".{target.name}.", "suffix": ".partial"}
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
