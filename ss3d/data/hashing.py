"""Stable, platform-independent hashes of strings (Python's ``hash`` is salted per process).

Everything that must not change when models are added or the process restarts — model ids,
splits, per-model view sampling — derives its randomness from these.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["stable_hash", "stable_rng"]


def stable_hash(text: str) -> int:
    """A 64-bit integer from the SHA-1 of ``text``."""
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "little")


def stable_rng(text: str) -> np.random.Generator:
    """A numpy generator seeded by :func:`stable_hash` of ``text``."""
    return np.random.default_rng(stable_hash(text))
