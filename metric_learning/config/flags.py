"""Shared command-line helpers: the classic notebook's flag conventions, checks that run at parse time."""
import argparse
import os

# Default output paths are anchored here, whatever the working directory: the scripts also run from inside
# metric_learning/ (the notebook way), and must not write into the package there.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def in_repo(*parts):
    """A default path inside the repository (``in_repo("output")`` is ``<repo>/output``)."""
    return os.path.join(REPO_ROOT, *parts)


def add_verbose_flag(parser):
    """``--verbose``; it acts at import time (see :func:`metric_learning.runtime.verbose_requested`)."""
    from metric_learning.runtime import VERBOSE_FLAG, VERBOSE_HELP

    parser.add_argument(VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP)
    return parser


def checkpoint_path(value):
    """argparse type of ``--checkpoint``: a missing or foreign checkpoint is the first error, before any work."""
    from metric_learning.models import checkpoint

    try:
        checkpoint.resolve(value)
    except checkpoint.CheckpointError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def str2bool(value):
    """Parse the notebook's ``True``/``False`` strings (and the usual synonyms)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "y", "t"):
        return True
    if text in ("false", "0", "no", "n", "f"):
        return False
    raise argparse.ArgumentTypeError("expected True or False, got %r" % value)


def parse_image_shape(value):
    """Parse ``C,H,W`` (e.g. ``3,256,128``) into a tuple of three positive ints."""
    try:
        shape = tuple(int(v) for v in str(value).replace(" ", "").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) <= 0:
        raise argparse.ArgumentTypeError("--image_shape must be C,H,W with positive ints, e.g. 3,256,128; got %r" % value)
    return shape


def run_cli(main, argv=None):
    """Run a script's ``main``; input errors print one clear line instead of a traceback.

    Our modules raise ValueError / FileNotFoundError (and subclasses) with messages
    naming the file, line or flag at fault; that message is what the user needs.
    Set PADDLE_REID_DEBUG=1 to see the full traceback.
    """
    import sys

    from metric_learning.engine.trainer import TrainingDiverged, TrainingInterrupted

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
