"""Process-level runtime set-up: CPU thread/MKL defaults and device selection."""
import os
import sys
import warnings


def _cpu_vendor():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def configure_cpu_env(environ=None):
    """Set thread and MKL defaults unless the user already chose them.

    Returns the dict of variables that were set by this call.
    """
    environ = os.environ if environ is None else environ
    chosen = {}
    if "OMP_NUM_THREADS" not in environ:
        chosen["OMP_NUM_THREADS"] = str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if "MKL_DEBUG_CPU_TYPE" not in environ and _cpu_vendor() == "AuthenticAMD":
        chosen["MKL_DEBUG_CPU_TYPE"] = "5"
    if chosen and "paddle" in sys.modules and environ is os.environ:
        warnings.warn("paddle was imported before metric_learning; thread/MKL defaults "
                      "(%s) will not take effect. Import metric_learning first." % ", ".join(chosen))
    environ.update(chosen)
    return chosen


def user_cache_dir():
    """Where compiled kernels and the image-check cache live: ``$XDG_CACHE_HOME/paddle-reid`` (``~/.cache``)."""
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "paddle-reid")


def select_device(use_gpu):
    """Pick 'gpu' or 'cpu' for Paddle; fall back to CPU with one clear warning."""
    import paddle

    if use_gpu:
        if not paddle.device.is_compiled_with_cuda():
            warnings.warn("--use_gpu True but this Paddle build has no CUDA support "
                          "(paddlepaddle CPU wheel); running on CPU.", stacklevel=2)
        elif paddle.device.cuda.device_count() == 0:
            warnings.warn("--use_gpu True but no GPU is visible; running on CPU.", stacklevel=2)
        else:
            paddle.set_device("gpu")
            return "gpu"
    paddle.set_device("cpu")
    return "cpu"
