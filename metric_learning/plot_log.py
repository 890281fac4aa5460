"""Plot a training run's curves from its train_log.jsonl: loss terms, accuracy, learning rate, images/s and the
evaluations logged during training, against the iteration.

    python -m metric_learning.plot_log output/MobileNetV2                  # -> output/MobileNetV2/train_curves.png
    python -m metric_learning.plot_log output/MobileNetV2/train_log.jsonl --output curves.png
"""
if not __package__:  # run by its path: the repository root goes first on sys.path (see run_by_path.py)
    import run_by_path  # noqa: F401
import argparse
import os

from metric_learning import plots
from metric_learning.engine import rundir
from metric_learning.errors import run_cli

DEFAULT_NAME = "train_curves.png"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a training run folder, <model_save_dir>/<model> (or its train_log.jsonl)")
    parser.add_argument("--output", default=None, help="the PNG to write (default: RUN_DIR/%s)" % DEFAULT_NAME)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    records = rundir.read_log(args.run_dir)
    folder = os.path.dirname(args.run_dir) if os.path.isfile(args.run_dir) else args.run_dir
    path = plots.plot_training(records, args.output or os.path.join(folder, DEFAULT_NAME),
                               title=os.path.abspath(folder))
    print("wrote %s (%d log records)" % (path, len(records)))
    return path


def console():
    """The ``reid-plot-log`` command."""
    run_cli(main)


if __name__ == "__main__":
    console()
