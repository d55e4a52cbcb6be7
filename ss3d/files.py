"""Writing files so that a crash never leaves half of one: the one atomic writer.

Checkpoints, HDF5 datasets, meshes and GIFs are all written through :func:`atomic_path`: into a
temp file beside the target, renamed onto it only when the write finished.

Names that become folders or files (an experiment, a collection, a category) are checked as
names (:func:`check_name`) where they enter, and paths built from them stay inside their root
(:func:`inside`): ``--set name=../../x`` never writes outside ``output_dir``.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["BadNameError", "atomic_path", "check_name", "inside", "name_problem",
           "remove_stale_temps"]

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


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path in the target's folder; rename onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the result the usual permissions (0666 & ~umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
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
