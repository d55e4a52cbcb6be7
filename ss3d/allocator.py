"""Keep large CPU buffers in the process instead of handing them back to the kernel every step.

glibc's ``malloc`` serves every block above its mmap threshold (at most 32 MiB on 64-bit) with
a fresh ``mmap`` and returns it with ``munmap`` when freed. A training step on the CPU makes
and frees tens of such tensors (one field layer's activations at the smoke size,
``(8, 24576, 64)`` fp32, are 48 MiB), so every step the kernel maps, zero-fills and unmaps the
same memory again: page faults, counted as system time, and a large share of a step on a CPU
without bf16 (docs/results.md, Speed). PyTorch's CPU guide answers this with jemalloc or
tcmalloc through ``LD_PRELOAD``; we stay on glibc and tell it, through ``mallopt``, to serve
large blocks from its heap (``M_MMAP_MAX = 0``) and to keep freed memory there up to
:data:`TRIM_THRESHOLD` (``M_TRIM_THRESHOLD``), so the next step reuses the pages it has.

The cost: freed memory stays with the process (its resident size stays near its peak instead of
falling between steps). The arithmetic does not change: the same kernels run on the same data,
and PyTorch aligns its CPU buffers itself. ``SS3D_MALLOC=default`` leaves glibc as it is
(``keep`` or unset: the setting above; another value is warned about and read as unset).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import warnings

__all__ = ["TRIM_THRESHOLD", "keep_large_blocks"]

#: Freed memory at the top of the heap beyond this is returned to the kernel (bytes).
TRIM_THRESHOLD = 1 << 30
_M_TRIM_THRESHOLD = -1  # glibc's <malloc.h> constants
_M_MMAP_MAX = -4


def keep_large_blocks() -> bool:
    """Set glibc's malloc to keep large blocks in its heap; returns whether it did.

    A no-op (False) without glibc (musl, macOS) or with ``SS3D_MALLOC=default``. Affects the
    allocations made after the call, in this process (worker processes import ``ss3d`` and
    call it again).
    """
    setting = os.environ.get("SS3D_MALLOC", "").strip().lower()
    if setting == "default":
        return False
    if setting not in ("", "keep"):
        warnings.warn(f"SS3D_MALLOC={os.environ['SS3D_MALLOC']!r} is not a setting: use "
                      "'default' (glibc as it is) or leave it unset (large blocks kept); "
                      "keeping large blocks", stacklevel=2)
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # mallopt's constants are glibc's
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
