"""One writer at a time for a piece of a data root (an advisory ``flock`` per piece).

Two ``ss3d render`` processes pointed at one ``data.root`` (two notebooks, a resubmitted job)
would otherwise write the same shard file at once, and the second would find the first's live
file half-written. With :func:`exclusive`, the second waits, naming the holder, and then finds
the work done. Shards of one render (``--shard i/N``) take different locks and still run in
parallel. The lock files stay in place (removing one while another process waits on it would
let a third process lock a new file); they hold the current holder's pid, host and command.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["exclusive"]

log = logging.getLogger(__name__)


def _describe(text: str) -> str:
    try:
        holder = json.loads(text)
        return (f"pid {holder['pid']} on {holder['host']} ({holder['command']}, since "
                f"{holder['since']})")
    except (ValueError, KeyError, TypeError):
        return "another process"


@contextmanager
def exclusive(lock_path: str | Path, what: str) -> Iterator[None]:
    """Hold ``lock_path`` while writing ``what``; wait (with a message) while another
    process holds it."""
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _describe(handle.read())
            log.warning("%s is being written by %s; waiting for it to finish (lock %s)",
                        what, holder, lock_path)
            print(f"waiting: {what} is being written by {holder}", file=sys.stderr,
                  flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "command": " ".join(sys.argv[:3]) or "python",
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)
