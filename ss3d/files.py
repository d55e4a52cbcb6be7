"""Writing files so that a crash never leaves half of one: the one atomic writer.

Checkpoints, HDF5 datasets, meshes and GIFs are all written through :func:`atomic_path`: into a
temp file beside the target, renamed onto it only when the write finished.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "remove_stale_temps"]


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
