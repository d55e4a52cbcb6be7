"""Small HDF5 helpers: atomic writes and format checks with errors that name the file."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

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


#: The newest version of each file format this ss3d reads.
FORMAT_VERSIONS = {"ss3d-render": 1, "ss3d-collection": 1}
_PROCEDURAL = re.compile(r"procedural-v(?P<version>\d+)\b")


def check_format(f: h5py.File, path: str | Path, expected: str,
                 datasets: Iterable[str] = ()) -> None:
    """Raise :class:`H5FormatError` unless ``f`` is an ss3d file of format ``expected``, of a
    version this ss3d reads, rendered (when procedural) by this ss3d's generator version,
    holding ``datasets``. Every reader of renders and collections comes through here, so no
    stage trains or evaluates on stale data."""
    found = f.attrs.get("format")
    if found is None:
        raise H5FormatError(f"{path}: not an ss3d file (no 'format' attribute; expected "
                            f"{expected!r})")
    if found != expected:
        raise H5FormatError(f"{path}: format is {found!r}, expected {expected!r}")
    version = f.attrs.get("version", 1)
    supported = FORMAT_VERSIONS.get(expected, 1)
    if not isinstance(version, int | np.integer) or version > supported:
        version = int(version) if isinstance(version, np.integer) else version
        raise H5FormatError(f"{path}: {expected} version {version!r}, newer than this ss3d "
                            f"reads ({supported}): use the ss3d that wrote it, or re-create it")
    source = str(f.attrs.get("source", ""))
    if (made := _PROCEDURAL.match(source)) is not None:
        from ss3d.data.procedural import PROCEDURAL_VERSION

        if int(made["version"]) != PROCEDURAL_VERSION:
            raise H5FormatError(
                f"{path}: rendered from the procedural generator version {made['version']} "
                f"(source {source!r}), this ss3d generates version {PROCEDURAL_VERSION}: its "
                "models are other shapes in another frame. Render again (`ss3d render`) into "
                "a new data.root, or after deleting the data root")
    missing = [name for name in datasets if name not in f]
    if missing:
        raise H5FormatError(f"{path}: truncated or incomplete, missing datasets {missing}")
