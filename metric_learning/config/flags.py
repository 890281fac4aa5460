"""Flag types and defaults every script shares: the classic notebook's conventions, checks that run at parse time.

Nothing here imports Paddle, so scripts that never need it (evaluating precomputed features, search) start fast.
"""
import argparse
import os

from metric_learning.config.schema import DEFAULT_IMAGE_SHAPE
from metric_learning.models import checkpoint
from metric_learning.runtime import VERBOSE_FLAG, VERBOSE_HELP

# Default output paths are anchored here, whatever the working directory: the scripts also run from inside
# metric_learning/ (the notebook way), and must not write into the package there.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def in_repo(*parts):
    """A default path inside the repository (``in_repo("output")`` is ``<repo>/output``)."""
    return os.path.join(REPO_ROOT, *parts)


def add_verbose_flag(parser):
    """``--verbose``; it acts at import time (see :func:`metric_learning.runtime.verbose_requested`)."""
    parser.add_argument(VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP)
    return parser


def checkpoint_path(value):
    """argparse type of ``--checkpoint``: a missing or foreign checkpoint is the first error, before any work."""
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


def add_conversion_arguments(parser, src_help, dst_help, image_shape_help):
    """``src dst [--image_shape]`` of the pretrained_model/convert_*.py scripts, which write checkpoint directories."""
    parser.add_argument("src", help=src_help)
    parser.add_argument("dst", help=dst_help)
    parser.add_argument("--image_shape", type=parse_image_shape, default=DEFAULT_IMAGE_SHAPE, help=image_shape_help)
    return parser


def check_conversion_paths(parser, args):
    """The source must exist and the checkpoint directory must not: a conversion never overwrites."""
    if not os.path.isfile(args.src):
        parser.error("src %s does not exist" % args.src)
    if os.path.exists(args.dst):
        parser.error("dst %s already exists; remove it or choose another directory" % args.dst)
