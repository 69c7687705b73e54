"""Keeps freed host memory in the process when XLA runs on the CPU.

XLA:CPU allocates an executable's temporary buffer (3.1 GiB for vit_small's fp32 train step at
batch 32) afresh for every execution, from one of its runtime threads. glibc serves so large a
block with ``mmap`` and returns it with ``munmap``, so every step faults in and zero-fills every
page again: about 850K-900K minor faults and 2-7 s of kernel time a step on a 2-core machine (README,
"What the gap to timm eager is made of"). Told to serve every block from the main heap and never
to trim it, glibc hands the same pages back step after step.

This has to happen before JAX creates its CPU client: the runtime threads pick their malloc arena
on their first allocation. ``keep_freed_memory`` is called by main.py and the benchmarks before
anything initializes a backend.

The trade: the process keeps its peak heap until it exits, and every thread allocates from one
arena (the input pipeline's threads too). It is done only where JAX will run on the CPU, on glibc.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import os
import platform

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8


def jax_will_run_on_cpu(platforms: str | None = None) -> bool:
    """Whether JAX's default backend will be the CPU, decided without initializing a backend:
    the first of ``platforms`` (default: JAX_PLATFORMS / jax_platforms), else no PJRT plugin
    installed where JAX looks for one (the ``jax_plugins`` namespace and entry points: CUDA, ROCm)
    and no libtpu."""
    if platforms is None:
        import jax

        platforms = jax.config.jax_platforms
    named = (platforms or "").strip()
    if named:
        return named.split(",")[0].strip() == "cpu"
    if importlib.util.find_spec("jax_plugins") is not None or importlib.util.find_spec("libtpu") is not None:
        return False
    return not importlib.metadata.entry_points(group="jax_plugins")


def keep_freed_memory(force: bool = False) -> bool:
    """Sets glibc's malloc to keep freed memory (one arena, no mmap, no trimming) when JAX will run
    on the CPU (or ``force``). Returns whether it was set. A no-op off glibc, and where
    GLIBC_TUNABLES is set, even empty: the user's settings stand (``GLIBC_TUNABLES= python
    main.py ...`` keeps glibc's defaults)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or "GLIBC_TUNABLES" in os.environ:
        return False
    if not (force or jax_will_run_on_cpu()):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # each returns 1 on success; M_TRIM_THRESHOLD -1 turns trimming off (mallopt(3))
    return all(libc.mallopt(param, value) == 1
               for param, value in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1)))
