"""The errors a user can cause or meet, and how a script reports them (:func:`run_cli`).

Modules raise ValueError / FileNotFoundError (and subclasses such as :class:`ConfigError`) with messages naming
the file, line or flag at fault; that message is what the user needs, so a script prints it as one line.
"""
import os
import sys


class ConfigError(ValueError):
    """A flag combination that cannot work; the message names the flag."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class TrainingInterrupted(RuntimeError):
    """SIGTERM / SIGINT stopped the run after saving a resumable checkpoint; ``.signum`` is the signal."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.signum = signum


def run_cli(main, argv=None):
    """Run a script's ``main``; input errors print one clear line instead of a traceback.

    Set PADDLE_REID_DEBUG=1 to see the full traceback.
    """
    try:
        return main(argv)
    except TrainingInterrupted as stopped:   # a checkpoint was saved; exit as the signal would have
        print(str(stopped), file=sys.stderr)
        sys.exit(128 + stopped.signum)
    except (ValueError, FileNotFoundError, TrainingDiverged) as error:
        if os.environ.get("PADDLE_REID_DEBUG"):
            raise
        print("error: %s" % error, file=sys.stderr)
        sys.exit(2)
