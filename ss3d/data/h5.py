"""Small HDF5 helpers: atomic writes and format checks with errors that name the file."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py

__all__ = ["H5FormatError", "atomic_h5", "check_format", "open_checked"]


class H5FormatError(ValueError):
    """An HDF5 file is truncated, foreign or lacks what ss3d needs (message names the file)."""


@contextmanager
def atomic_h5(path: str | Path) -> Iterator[h5py.File]:
    """Write an HDF5 file to ``<path>.tmp`` and rename it onto ``path`` only on success.

    A crash or Ctrl-C leaves no half-written ``path`` (the stale temp file is removed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if tmp.exists():
        tmp.unlink()
    try:
        with h5py.File(tmp, "w") as f:
            yield f
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


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


def open_checked(path: str | Path, expected: str, datasets: Iterable[str] = ()) -> h5py.File:
    """Open ``path`` read-only and check its format; errors name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"HDF5 file not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise H5FormatError(f"{path}: not a readable HDF5 file (truncated or foreign: "
                            f"{err})") from None
    try:
        check_format(f, path, expected, datasets)
    except H5FormatError:
        f.close()
        raise
    return f
