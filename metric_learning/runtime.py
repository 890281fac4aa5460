"""Process-level runtime set-up: CPU thread/MKL defaults, third-party noise, device selection."""
import importlib.abc
import importlib.util
import io
import logging
import os
import sys
import warnings

VERBOSE_FLAG = "--verbose"
VERBOSE_HELP = ("show third-party notices that are hidden by default (Paddle's OMP_NUM_THREADS warning and C++ "
                "warnings, faiss INFO lines, ppcls deprecation notices); also PADDLE_REID_VERBOSE=1")
# printed by paddle/base/__init__.py on import whenever OMP_NUM_THREADS > 1, which we set on purpose
_PADDLE_IMPORT_NOISE = ("WARNING: OMP_NUM_THREADS set to", "PLEASE USE OMP_NUM_THREADS WISELY.")


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


def verbose_requested(argv=None, environ=None):
    """``--verbose`` on the command line or ``PADDLE_REID_VERBOSE=1``: read at import, before Paddle loads."""
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    return VERBOSE_FLAG in argv[1:] or environ.get("PADDLE_REID_VERBOSE", "") not in ("", "0")


class _DropLines(io.TextIOBase):
    """A stderr stand-in that passes every line through except those starting with ``prefixes``."""

    def __init__(self, stream, prefixes):
        super().__init__()
        self.stream, self.prefixes, self.pending = stream, prefixes, ""

    def write(self, text):
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if not line.startswith(self.prefixes):
                self.stream.write(line + "\n")
        return len(text)

    def flush(self):
        if self.pending and not self.pending.startswith(self.prefixes):
            self.stream.write(self.pending)
        self.pending = ""
        self.stream.flush()


class _QuietPaddleImport(importlib.abc.MetaPathFinder):
    """Runs ``paddle.base``'s import with its OMP_NUM_THREADS lines filtered out of stderr, whenever and by
    whichever module Paddle is first imported (so modules that never need Paddle still do not load it)."""

    def find_spec(self, name, path, target=None):
        if name != "paddle.base":
            return None
        sys.meta_path.remove(self)   # once; and find_spec below must not come back here
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            stderr, sys.stderr = sys.stderr, _DropLines(sys.stderr, _PADDLE_IMPORT_NOISE)
            try:
                run(module)
            finally:
                sys.stderr.flush()
                sys.stderr = stderr

        spec.loader.exec_module = exec_module
        return spec


class _DropMessages(logging.Filter):
    def __init__(self, *fragments):
        super().__init__()
        self.fragments = fragments

    def filter(self, record):
        return not any(fragment in str(record.msg) for fragment in self.fragments)


def quiet_third_party(environ=None):
    """Hide third-party notices that say nothing actionable to a user (``--verbose`` keeps them)."""
    environ = os.environ if environ is None else environ
    environ.setdefault("GLOG_minloglevel", "2")   # Paddle's C++ warnings, e.g. PIR notices on export
    if "paddle.base" not in sys.modules and not any(isinstance(f, _QuietPaddleImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietPaddleImport())
    logging.getLogger("faiss").setLevel(logging.WARNING)   # "Loading faiss with AVX512 support." twice
    logging.getLogger("ppcls").addFilter(_DropMessages('"init_res" will be deprecated'))


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
