"""paddle-reid: PaddlePaddle metric learning for person re-identification.

Importing this package sets CPU runtime defaults *before* Paddle is imported,
because Paddle reads them only once, at import time:

- ``OMP_NUM_THREADS``: Paddle forces 1 thread unless it is set, so we default
  it to every core of the machine.
- ``MKL_DEBUG_CPU_TYPE=5``: Paddle's bundled MKL takes a slow code path on AMD
  CPUs unless told to use the AVX2 kernels (matmul 25 -> 82 GFLOP/s on one core
  of this project's machines).

Both are ``setdefault``: a value already in the environment always wins.
"""
import warnings as _warnings

from metric_learning import runtime as _runtime

_runtime.configure_cpu_env()
if not _runtime.verbose_requested():
    _runtime.quiet_third_party()
# Paddle warns at import that ccache (a C++ build cache for custom operators) is
# missing; we build no custom operators, so the message is only noise for users.
_warnings.filterwarnings("ignore", message="No ccache found")
# Paddle 3.3's BatchNorm announces on every training forward that it tracks global
# statistics; that is the behaviour we want and the message says nothing actionable.
_warnings.filterwarnings("ignore", message="When training, we now always track global mean and variance")

__version__ = "0.1.0"
