"""Small HDF5 helpers: atomic writes and format checks with errors that name the file."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py

from ss3d.files import atomic_path, remove_stale_temps

__all__ = ["H5FormatError", "atomic_h5", "check_format"]


class H5FormatError(ValueError):
    """An HDF5 file is truncated, foreign or lacks what ss3d needs (message names the file)."""


@contextmanager
def atomic_h5(path: str | Path) -> Iterator[h5py.File]:
    """Write an HDF5 file beside ``path`` and rename it onto ``path`` only on success.

    A crash or Ctrl-C leaves no half-written ``path`` (:func:`ss3d.files.atomic_path`); the
    temp file of an earlier killed write is removed first (one writer per file: its lock).
    """
    path = Path(path)
    if path.parent.is_dir():
        remove_stale_temps(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        yield f


def check_format(f: h5py.File, path: str | Path, expected: str,
                 datasets: Iterable[str] = ()) -> None:
    """Raise :class:`H5FormatError` unless ``f`` is an ss3d file of format ``expected``."""
    found = f.attrs.get("format")
    if found is None:
        raise H5FormatError(f"{path}: not an ss3d file (no 'format' attribute; expected "
                            f"{expected!r})")
    if found != expected:
        raise H5FormatError(f"{path}: format is {found!r}, expected {expected!r}")
    missing = [name for name in datasets if name not in f]
    if missing:
        raise H5FormatError(f"{path}: truncated or incomplete, missing datasets {missing}")
