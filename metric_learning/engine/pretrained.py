"""What ``--pretrained_model`` loads: ImageNet weights (a PaddleClas .pdparams, a Paddle 1.x parameter directory)
or a paddle-reid checkpoint, whose network initialises the new run and whose classifier is kept when it fits.
"""
import os

from metric_learning.models import checkpoint, weights


def checkpoint_directory(path):
    """The paddle-reid checkpoint directory ``path`` names, or None for any other weights path."""
    try:
        return checkpoint.resolve(path)
    except checkpoint.CheckpointError:
        return None  # a .pdparams file or a Paddle 1.x parameter directory


def pretrained_weights_file(path):
    """``--pretrained_model`` may name a paddle-reid checkpoint directory; use its network weights then."""
    directory = checkpoint_directory(path)
    return path if directory is None else os.path.join(directory, checkpoint.MODEL_FILE)


def load_pretrained_criterion(criterion, path, log=print):
    """Keep the classifier of a paddle-reid checkpoint given as ``--pretrained_model`` when it fits.

    Continuing a run with a new schedule should not restart a trained classifier from
    random: its first large, wrong gradients would push the backbone away from what it
    learned. A classifier of another loss or class count cannot fit and is reported.
    """
    directory = checkpoint_directory(path)
    if directory is None or not criterion.parameters():
        return None  # ImageNet weights, or a loss without weights: there is no classifier to keep
    criterion_file = os.path.join(directory, checkpoint.CRITERION_FILE)
    state = weights.read_state(criterion_file) if os.path.exists(criterion_file) else None
    if not state:
        return None
    try:
        return weights.load_state(criterion, state, criterion_file)
    except ValueError as exc:
        log("classifier not reused, it starts from random: %s" % exc)
        return None
