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
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["BadNameError", "OutputFolderError", "WriteError", "atomic_path", "check_name",
           "inside", "name_problem", "process_alive", "process_start", "remove_dead_temp_dirs",
           "remove_stale_temps", "replacing_dir", "repo_root", "temp_dir", "write_error"]

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
        # named for this host and process: another process's clean-up leaves it alone while
        # this one lives (remove_stale_temps)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_host()}-{os.getpid()}.",
                                   suffix=".tmp", dir=path.parent)
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

    Only those whose writer is gone: a temp file names its host and process
    (:func:`atomic_path`), and one of a live process on this host, or of another host, is that
    process's write in progress (two runs of one experiment at once must not delete each
    other's). A temp file without an owner in its name is an older ss3d's leftover.
    """
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        rest = stale.name[len(path.name) + 1:]
        owner = _OWNED.match(rest)
        if owner is not None and (owner["host"] != _host() or process_alive(int(owner["pid"]))):
            continue
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


#: The file that marks a folder as an ss3d command's output: ``replacing_dir`` replaces only
#: folders holding it (or new and empty ones). JSON: the entries the command wrote.
OUTPUT_MARKER = ".ss3d-output"


class OutputFolderError(ValueError):
    """An output folder (``-o``) that is not an ss3d output: a file, or a folder of the
    user's. Refused before anything is written: a command never deletes what it did not
    write."""


def _output_problem(final: Path) -> str | None:
    """Why ``final`` may not be replaced by a command's output, or None when it may: it does
    not exist, is an empty folder, or holds :data:`OUTPUT_MARKER` and nothing but the entries
    that marker lists."""
    if not final.exists() and not final.is_symlink():
        return None
    if not final.is_dir():
        return "it is a file"
    entries = sorted(p.name for p in final.iterdir())
    if not entries:
        return None
    marker = final / OUTPUT_MARKER
    if not marker.is_file():
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        return (f"it is a folder not written by ss3d (no {OUTPUT_MARKER} marker; it holds "
                f"{shown})")
    try:
        listed = json.loads(marker.read_text(encoding="utf-8") or "{}").get("entries")
    except (ValueError, AttributeError, OSError):
        listed = None
    if listed is None:  # a bare marker: the whole folder is an earlier output
        return None
    foreign = [e for e in entries if e not in {*listed, OUTPUT_MARKER}]
    if foreign:
        return ("it holds files the earlier report did not write (" + ", ".join(foreign[:3])
                + (", ..." if len(foreign) > 3 else "") + ")")
    return None


@contextmanager
def replacing_dir(final: str | Path) -> Iterator[Path]:
    """A new temp folder beside ``final`` to fill; when the block ends normally it replaces
    ``final`` whole, readable by everyone, never a moment with half of either (the old one is
    renamed away first); when it raises, the temp folder goes and ``final`` is untouched.
    Half-written folders of killed processes beside ``final`` are removed first.

    ``final`` must be new, an empty folder, or an earlier output of a command (it holds
    :data:`OUTPUT_MARKER`, written here, and nothing else than what that output wrote);
    anything else (a file, a folder of the user's) is refused with :class:`OutputFolderError`
    before anything is written.
    """
    final = Path(final)
    problem = _output_problem(final)
    if problem is not None:
        raise OutputFolderError(f"{final}: refusing to write the report there: {problem}; "
                                "give a new or empty folder (-o), or remove it yourself")
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temp_dirs(final.parent)
    tmp = temp_dir(final)
    try:
        yield tmp
        (tmp / OUTPUT_MARKER).write_text(json.dumps({
            "written_by": "ss3d", "entries": sorted(p.name for p in tmp.iterdir())}) + "\n",
            encoding="utf-8")
        for path in tmp.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        tmp.chmod(0o755)
        problem = _output_problem(final)  # again: it may have changed meanwhile
        if problem is not None:
            raise OutputFolderError(f"{final}: refusing to write the report there: {problem}; "
                                    "give a new or empty folder (-o), or remove it yourself")
        # the earlier output goes aside under a name of this process, so that a kill here
        # leaves it to the next run's clean-up of dead processes' folders
        old = final.with_name(f".{final.name}.{_host()}-{os.getpid()}.old.tmp")
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from ``/proc``), or None where
    that cannot be read: with the pid, it names a process even after its pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()[19]
    except (OSError, ValueError, IndexError):
        return None


def remove_dead_temp_dirs(folder: str | Path) -> list[Path]:
    """Delete the :func:`temp_dir` folders in ``folder`` whose process (on this host) is gone;
    returns them. Folders of other hosts are left: their processes cannot be checked here."""
    folder, removed = Path(folder), []
    if not folder.is_dir():
        return removed
    for path in folder.glob(".*.tmp"):
        owner = _OWNED.search(path.name)
        if (owner is None or owner["host"] != _host() or process_alive(int(owner["pid"]))
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
