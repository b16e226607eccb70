"""Handing the allocator's free memory back to the system after a poll.

A poll allocates and frees a lot (JSON pages, ``Mention`` objects, tokenizer buffers, SQL
rows) on the scheduler's worker threads. glibc gives each thread its own malloc arena and
keeps what was freed in it for reuse: the memory is free but stays resident, and with
several threads polling at once it creeps up cycle after cycle (``benchmarks/bench_poll.py``,
1,000 queries: 20-30 MB free inside the arenas after a few cycles). ``malloc_trim(0)`` returns
the free pages of every arena to the system (2-3 ms of CPU); the service calls
``release_free_memory`` after each poll. Elsewhere (musl, macOS) it does nothing.

    >>> release_free_memory() in (True, False)
    True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from typing import Any

__all__ = ["release_free_memory"]

_lock = threading.Lock()
_trim: Any = None
_looked = False


def _malloc_trim() -> Any:
    global _trim, _looked
    with _lock:
        if not _looked:
            _looked = True
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                trim: Any = libc.malloc_trim
            except (OSError, AttributeError):  # not glibc
                trim = None
            else:
                trim.argtypes = [ctypes.c_size_t]
                trim.restype = ctypes.c_int
            _trim = trim
    return _trim


def release_free_memory() -> bool:
    """Return the allocator's free pages to the system (glibc ``malloc_trim``).

    ``True`` if memory was released, ``False`` if none was or the C library has no
    ``malloc_trim``. Safe from any thread; never raises.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    try:
        return bool(trim(0))
    except Exception:  # pragma: no cover - a C library that misbehaves
        return False
