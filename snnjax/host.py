r"""Host memory: keep freed memory for reuse, so XLA:CPU's large temporaries stop page-faulting.

XLA:CPU allocates each compiled call's temporary buffers afresh (the residuals a training step
keeps for its backward pass, the stacked outputs of a scan) and frees them when the call
returns. glibc's ``malloc`` serves every allocation above its mmap threshold (at most 32 MiB)
with a new ``mmap`` and returns it with ``munmap``. A training step with more temporaries
than that therefore faults in every page again on every call, which takes a measurable part of
a step's time on a CPU (``docs/howto/speed.md`` has the measurement).

:func:`tune_host_allocator` tells glibc to serve large allocations from its heap
(``mallopt(M_MMAP_MAX, 0)``), to keep up to 2 GiB of freed memory at the heap's top instead of
handing it back (``M_TRIM_THRESHOLD``), and to use one heap for all threads, so that a buffer
freed by one of XLA's threads is reused by another (``M_ARENA_MAX = 1``), as caching allocators
do. The process then keeps its
peak host memory for as long as it lives. It changes the whole process (PyTorch in the same
process benefits too), so snnjax never calls it on import: the ``snnjax demo`` and ``snnjax train``
commands call it unless given ``--no-tune-allocator``, and the speed benchmarks call it for every
library alike. Call it first thing in your own training script, before JAX starts its backend:
threads started earlier keep their own malloc arenas, and only part of the effect remains.
Accelerator memory is not affected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["tune_host_allocator"]

# From glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_NEVER_TRIM = 2**31 - 1  # mallopt takes an int; 2 GiB of free heap top is kept, more is trimmed


def tune_host_allocator() -> bool:
    """Make glibc keep freed host memory for reuse (see the module docstring).

    Returns:
      ``True`` if the allocator was tuned; ``False`` where there is nothing to tune (not
      Linux with glibc, e.g. macOS or musl), in which case nothing changed.

    Examples:
      >>> import snnjax
      >>> snnjax.tune_host_allocator() in (True, False)
      True
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; all three must succeed, or large buffers are still mapped and unmapped per call.
    return all(
        mallopt(option, value) == 1
        for option, value in ((_M_ARENA_MAX, 1), (_M_TRIM_THRESHOLD, _NEVER_TRIM), (_M_MMAP_MAX, 0))
    )
