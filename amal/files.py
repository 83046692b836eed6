"""Files written safely: a hidden temp file, synced, then renamed into place (a kill leaves the old file or the new one,
never half of either); a new result never replaces an earlier one; a link is written through; folders are checked
writable before any work, and those a failed command created are removed again.
"""

import errno
import glob
import os
import time
from pathlib import Path

from amal.errors import UsageError


def check_writable(folder: str | Path, what: str = "results directory") -> Path:
    """Create `folder` if needed and prove a file can be written there; UsageError naming `what` otherwise."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{what} {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"{what} {folder} is not writable: {exc.strerror or exc}") from exc
    return folder


def missing_folders(path: str | Path) -> list[Path]:
    """`path` and those of its parents that do not exist yet, innermost first (what check_writable would create)."""
    path = Path(path).absolute()
    return [folder for folder in (path, *path.parents) if not folder.exists()]


def remove_empty(folders: list[Path]) -> None:
    """Remove the folders of `folders` (innermost first) that are empty: a command that failed leaves none behind."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty, or not there
            pass


def temp_name(path: Path, pid: int | str | None = None) -> str:
    """The hidden temp file `atomic_write_bytes` writes beside `path` in process `pid` (default: this one; '' gives
    the name's prefix, common to every process)."""
    return f".{Path(path).name}.tmp{os.getpid() if pid is None else pid}"


def remove_stale_temps(path: Path, min_age_s: float = 60.0) -> list[Path]:
    """Remove the temp files of `path` left by writers killed mid-write: their process is gone and they are older
    than `min_age_s` (a writer in another PID namespace or on another host sharing the folder may look gone)."""
    path, removed = Path(path), []
    now = time.time()
    prefix = temp_name(path, pid="")
    for tmp in path.parent.glob(f"{glob.escape(prefix)}*"):
        pid = tmp.name.removeprefix(prefix)
        if not (pid.isascii() and pid.isdigit()) or int(pid) == os.getpid():
            continue
        try:
            if now - tmp.stat().st_mtime < min_age_s:
                continue
            os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
        except (ProcessLookupError, OverflowError):  # gone, or no process could have that number
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
        except OSError:  # alive and another user's (PermissionError), or the file went meanwhile
            pass
    return removed


def written_through(path: str | Path) -> Path:
    """The file that writing over `path` replaces: where it points when it is a link (the link is kept), else `path`
    itself. A loop of links raises RuntimeError (OSError from Python 3.13 on)."""
    path = Path(path)
    return path.resolve() if path.is_symlink() else path


def atomic_write_bytes(path: Path, data: bytes, overwrite: bool = False) -> Path:
    """Write `data` to `path` via a hidden temp file and a rename; refuse to replace a file unless `overwrite`. A file
    written over and over (a checkpoint) also sheds the temp files of earlier writers killed mid-write; a symlink
    is written through (the file it points to is replaced, the link kept)."""
    given = path = Path(path)
    if overwrite:
        path = written_through(path)
        remove_stale_temps(path)
    tmp = staged(path, data)
    try:
        if overwrite:
            os.replace(tmp, path)
        else:
            publish_new(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return given


def staged(path: Path, data: bytes) -> Path:
    """The hidden temp file beside `path` holding `data`, written and synced (removed again if that fails)."""
    tmp = path.with_name(temp_name(path))
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def replace_all(files: dict[Path, bytes]) -> list[Path]:
    """Write each of `files` over what is there (a symlink written through), all or none: every temp file is written
    before the first is renamed into place, so a full disk fails before any file changed."""
    renames = []
    try:
        for given, data in files.items():
            path = written_through(given)
            remove_stale_temps(path)
            try:
                renames.append((staged(path, data), path))
            except OSError as exc:  # named by the file it was for, not by its temp file
                raise OSError(exc.errno, exc.strerror, str(given)) from exc
        for tmp, path in renames:
            os.replace(tmp, path)
    finally:
        for tmp, _ in renames:
            tmp.unlink(missing_ok=True)
    return [Path(given) for given in files]


# what link() fails with on a file system without hard links (vfat, exFAT, some network shares)
NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}


def publish_new(tmp: Path, path: Path) -> None:
    """Give the written file `tmp` the name `path`, which must not exist (FileExistsError: an earlier result is
    never replaced). A hard link does both at once; where there are none, the name is claimed by an exclusive
    create (empty for the moment the rename then takes)."""
    try:
        os.link(tmp, path)
    except OSError as exc:
        if exc.errno not in NO_HARD_LINKS:  # FileExistsError too: EEXIST is not among them
            raise
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        try:
            os.replace(tmp, path)
        except BaseException:  # (Ctrl-C too) an empty claimed file would stop every later report
            path.unlink(missing_ok=True)
            raise
    else:
        tmp.unlink()
