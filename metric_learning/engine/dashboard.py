"""VisualDL (PaddlePaddle's training dashboard) as an optional mirror of ``train_log.jsonl``:
``--use_visualdl True`` writes every scalar of every log record (:func:`metric_learning.engine.rundir.log_scalars`:
``train/loss``, ``train/lr``, ..., ``eval/rank1``, ``eval/mAP``, ...) at its iteration to ``<run>/visualdl``;
``visualdl --logdir <run>/visualdl`` shows them.

visualdl is not in requirements.txt: its own dependencies (Flask, Flask-Babel, bce-python-sdk and ten more)
serve only the dashboard, and no test needs it. ``pip install visualdl`` adds them beside the pinned environment
without changing a pinned package (measured with visualdl 2.5.3; see docs/training.md).
"""
import os

from metric_learning.engine.rundir import log_scalars
from metric_learning.errors import ConfigError

FOLDER = "visualdl"
INSTALL_HINT = "pip install visualdl==2.5.3"


def require_visualdl():
    """ConfigError with the install command unless ``visualdl`` imports (checked before any work: a broken
    install shows here, not at the first log record)."""
    try:
        import visualdl  # noqa: F401
    except ImportError as error:
        raise ConfigError("--use_visualdl True needs the visualdl package, which cannot be imported (%s); install "
                          "it with `%s` (it stays out of requirements.txt), or drop the flag: train_log.jsonl "
                          "holds the same numbers" % (error, INSTALL_HINT)) from None


class VisualDLMirror:
    """Writes the scalars of the log records it is given to a VisualDL ``LogWriter`` in ``<run_dir>/visualdl``.

    The writer is opened at the first record, once the run owns its directory, and closed on leaving the
    ``with`` block, before a failed run's directory may be removed.
    """

    def __init__(self, run_dir):
        self.logdir = os.path.join(run_dir, FOLDER)
        self._writer = None

    def write(self, record):
        scalars = log_scalars(record)
        if not scalars:
            return
        if self._writer is None:
            from visualdl import LogWriter

            self._writer = LogWriter(logdir=self.logdir)
        for tag, value in scalars.items():
            self._writer.add_scalar(tag=tag, value=value, step=int(record["iter"]))

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
