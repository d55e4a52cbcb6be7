"""Writing files so that a crash never leaves half of one: the one atomic writer.

Checkpoints, HDF5 datasets, meshes and GIFs are all written through :func:`atomic_path`: into a
temp file beside the target, renamed onto it only when the write finished.

Names that become folders or files (an experiment, a collection, a category) are checked as
names (:func:`check_name`) where they enter, and paths built from them stay inside their root
(:func:`inside`): ``--set name=../../x`` never writes outside ``output_dir``. Where the
repository is: :func:`repo_root`.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["BadNameError", "WriteError", "atomic_path", "check_name", "inside", "name_problem",
           "remove_dead_temp_dirs", "remove_stale_temps", "repo_root", "temp_dir", "write_error"]

MAX_NAME_CHARS = 128
_NAME = re.compile(r"\w[\w.\- ]*")


class BadNameError(ValueError):
    """A name (experiment, collection, category) that cannot be one folder or file name."""


def name_problem(value: object) -> str | None:
    """Why ``value`` is not a plain name (one path component), or None when it is one.

    A name is letters, digits, ``_``, ``-``, ``.`` and spaces, starting with a letter, digit or
    ``_``: no path separator, no ``..``, not empty, at most :data:`MAX_NAME_CHARS` characters.
    """
    if not isinstance(value, str) or not value.strip():
        return "it is empty"
    if "/" in value or "\\" in value or os.sep in value:
        return "it holds a path separator"
    if ".." in value:
        return "it holds '..'"
    if value != value.strip():
        return "it starts or ends with a space"
    if len(value) > MAX_NAME_CHARS:
        return f"it is longer than {MAX_NAME_CHARS} characters"
    if not _NAME.fullmatch(value):
        return ("it holds characters other than letters, digits, '_', '-', '.' and spaces, "
                "or starts with one of '.-'")
    return None


def check_name(value: object, key: str) -> str:
    """``value`` if it is a plain name (:func:`name_problem`), else :class:`BadNameError` naming
    ``key`` and the reason."""
    problem = name_problem(value)
    if problem is not None:
        raise BadNameError(f"{key}: {value!r} is not a name: {problem} (a name becomes one "
                         "folder or file: letters, digits, '_', '-', '.', spaces)")
    return str(value)


def inside(root: str | Path, *parts: str) -> Path:
    """``root / parts...``, refused (:class:`BadNameError`) unless it stays inside ``root``.

    Checked on the normalised path (``..`` and absolute parts resolved, symlinks kept: a link
    the user made inside the root is theirs to make).
    """
    base = Path(os.path.abspath(root))
    path = Path(os.path.abspath(base.joinpath(*parts)))
    if path != base and base not in path.parents:
        raise BadNameError(f"{path} is outside {base} (from {'/'.join(parts)!r}): refusing to "
                         "write there")
    return path


class WriteError(OSError):
    """Writing a file failed; the message names the file and the cause (disk full, read-only,
    permission, size limit)."""

    def __str__(self) -> str:
        return str(self.strerror)


# errno -> the cause in words; an OSError of another errno is not called a write failure
_CAUSES = {
    errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
    errno.EPERM: "permission denied (or the folder is immutable)",
    errno.EFBIG: "the file exceeds the process's file size limit (ulimit -f)",
}
_H5_ERRNO = re.compile(r"errno = (\d+)")


def write_error(path: str | Path, err: BaseException) -> WriteError | None:
    """A :class:`WriteError` naming ``path`` and the cause of ``err``, or None when ``err`` is
    not one of the write failures of :data:`_CAUSES` (then it is raised unchanged)."""
    if isinstance(err, WriteError):
        return err
    code = getattr(err, "errno", None)
    if code is None and (match := _H5_ERRNO.search(str(err))):  # h5py keeps it in the text
        code = int(match.group(1))
    if code not in _CAUSES:
        return None
    cause = _CAUSES[code]
    if code in (errno.ENOSPC, errno.EDQUOT):
        with _quiet():
            free = shutil.disk_usage(Path(path).parent).free
            cause += f" ({free / 2**20:.0f} MiB free there)"
    return WriteError(code, f"cannot write {path}: {cause}")


@contextmanager
def _quiet() -> Iterator[None]:
    try:
        yield
    except OSError:
        pass


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path in the target's folder; rename onto ``path`` only on success.

    Raises:
        WriteError: naming ``path`` and the cause when the folder, the temp file or the rename
            fail for want of space or permission (:func:`write_error`); the temp file is gone
            and an earlier ``path`` is untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        if (failure := write_error(path, err)) is None or failure is err:
            raise
        raise failure from err
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the result the usual permissions (0666 & ~umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except OSError as err:
        if (failure := write_error(path, err)) is None or failure is err:
            raise
        raise failure from err
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_stale_temps(path: Path) -> None:
    """Delete temp files an interrupted write of ``path`` left behind (``kill -9`` mid-write).

    Only for files that one process writes at a time (a run's checkpoint is written by its
    rank 0; an HDF5 output under its lock): any other temp file of this name is then a dead
    write's leftover, possibly as large as the file.
    """
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)


# Temp folders name their owner (host and process), so the next run removes those of a process
# that died (kill -9, a node lost mid-render) and never those of one still writing.
_OWNED = re.compile(r"\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname()) or "host"


def temp_dir(target: str | Path) -> Path:
    """A new temp folder beside ``target`` (to be renamed onto it), named for this host and
    process: ``.<name>.<host>-<pid>.<random>.tmp``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.{_host()}-{os.getpid()}.",
                                 suffix=".tmp", dir=target.parent))


@contextmanager
def replacing_dir(final: str | Path) -> Iterator[Path]:
    """A new temp folder beside ``final`` to fill; when the block ends normally it replaces
    ``final`` whole, readable by everyone, never a moment with half of either (the old one is
    renamed away first); when it raises, the temp folder goes and ``final`` is untouched.
    Half-written folders of killed processes beside ``final`` are removed first."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temp_dirs(final.parent)
    tmp = temp_dir(final)
    try:
        yield tmp
        for path in tmp.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        tmp.chmod(0o755)
        old = final.with_name(f".{final.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_dead_temp_dirs(folder: str | Path) -> list[Path]:
    """Delete the :func:`temp_dir` folders in ``folder`` whose process (on this host) is gone;
    returns them. Folders of other hosts are left: their processes cannot be checked here."""
    folder, removed = Path(folder), []
    if not folder.is_dir():
        return removed
    for path in folder.glob(".*.tmp"):
        owner = _OWNED.search(path.name)
        if (owner is None or owner["host"] != _host() or _alive(int(owner["pid"]))
                or not path.is_dir()):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def repo_root() -> Path:
    """The repository root when ss3d runs from a checkout, else the working directory.

    Here and not in :mod:`ss3d.tracking`, which imports MLflow (about a second): commands that
    only need the root (``ss3d reconstruct`` finding the default config) stay light.
    """
    candidate = Path(__file__).resolve().parent.parent
    if (candidate / "pyproject.toml").is_file() and (candidate / "ss3d").is_dir():
        return candidate
    return Path.cwd()
