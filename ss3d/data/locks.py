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

__all__ = ["HeldLock", "LockedError", "exclusive", "hold"]

log = logging.getLogger(__name__)


def _describe(text: str) -> str:
    try:
        holder = json.loads(text)
        return (f"pid {holder['pid']} on {holder['host']} ({holder['command']}, since "
                f"{holder['since']})")
    except (ValueError, KeyError, TypeError):
        return "another process"


def _holder_text() -> str:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "command": " ".join(sys.argv[:3]) or "python",
                       "since": time.strftime("%Y-%m-%d %H:%M:%S")})


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
        handle.write(_holder_text())
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)


class LockedError(RuntimeError):
    """Another process holds the lock: the message names it (pid, host, command, since)."""


# The locks this process holds (path -> [handle, token]): a stage opened again in the same
# process (a notebook cell rerun after an error) takes its own lock over instead of waiting
# for itself.
_HELD: dict[str, list] = {}


class HeldLock:
    """A lock taken by :func:`hold`; :meth:`release` (idempotent) lets the next run in."""

    def __init__(self, path: Path, token: object) -> None:
        self.path, self._token = path, token

    @property
    def held(self) -> bool:
        entry = _HELD.get(str(self.path))
        return entry is not None and entry[1] is self._token

    def release(self) -> None:
        entry = _HELD.get(str(self.path))
        if entry is None or entry[1] is not self._token:
            return  # released already, or taken over by a later run of this process
        del _HELD[str(self.path)]
        handle = entry[0]
        try:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)
        finally:
            handle.close()


def hold(lock_path: str | Path, what: str) -> HeldLock:
    """Take ``lock_path`` for ``what`` (one run of an experiment's training stage) until
    :meth:`HeldLock.release` or the process ends; never waits.

    Raises:
        LockedError: at once, naming the process that holds it (``what`` is being run by pid
            N on host H (command, since ...)).
    """
    lock_path = Path(lock_path)
    key, token = str(lock_path), object()
    if key in _HELD:  # this process holds it already: the new run takes it over
        _HELD[key][1] = token
        handle = _HELD[key][0]
    else:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+")  # noqa: SIM115 (held beyond this function)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _describe(handle.read())
            handle.close()
            raise LockedError(f"{what} is already running: {holder} holds {lock_path}; wait "
                              "for it to finish (or stop it) and run again") from None
        _HELD[key] = [handle, token]
    handle.seek(0)
    handle.truncate()
    handle.write(_holder_text())
    handle.flush()
    return HeldLock(lock_path, token)
