"""Process-level XLA settings, applied before JAX starts its backends.

XLA:CPU's XNNPACK kernels (fp32 GEMMs and convolutions, same precision) make the ViT train
step ~25% faster on CPU (benchmarks/bench.py on the 2-core development machine; README).
The flag is only known to the jaxlib versions listed here, and XLA aborts on an unknown
flag, so it is added for those versions only; JAXVIT_XNNPACK=0 turns it off.
"""

from __future__ import annotations

import os
from importlib import metadata

XNNPACK_FLAG = "--xla_cpu_use_xnnpack=true"
XNNPACK_JAXLIB = ("0.10.",)  # versions where the flag exists and was measured


def enable_fast_cpu_kernels(environ=os.environ) -> bool:
    """Adds XNNPACK to XLA_FLAGS unless the user set it, turned it off, or jaxlib is untested."""
    flags = environ.get("XLA_FLAGS", "")
    if environ.get("JAXVIT_XNNPACK", "1") == "0" or "xla_cpu_use_xnnpack" in flags:
        return False
    try:
        version = metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return False
    if not version.startswith(XNNPACK_JAXLIB):
        return False
    environ["XLA_FLAGS"] = f"{flags} {XNNPACK_FLAG}".strip()
    return True
