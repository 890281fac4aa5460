"""Checkpoints: atomic on-disk layout, a ``latest`` pointer, and loading for evaluation.

A checkpoint is a directory ``<model_save_dir>/<model>/<iter>/`` holding

    model.pdparams      the ReIDNet weights (backbone + head)
    criterion.pdparams  weights owned by the loss (classifier / ArcMargin), may be empty
    optimizer.pdopt     optimizer slots (momentum, Adam moments)
    trainer_state.pkl   iteration, LR-schedule state, sampler state (plain data; read back with a
                        restricted unpickler that refuses any class or function, so it cannot run code)
    config.json         everything needed to rebuild the model (backbone, head, input shape)

It is first written to a hidden sibling directory and then renamed into place, so
a process killed mid-write leaves either the previous checkpoint or the new one,
never a half-written directory under the final name. ``latest`` is a symlink that
is replaced atomically in the same way.
"""
import os
import pickle
import shutil
import tempfile

from metric_learning.config import schema

# Paddle is imported inside the functions that read or write tensors: --checkpoint is checked at parse time
# (config.flags.checkpoint_path) by scripts that may never load Paddle.

MODEL_FILE = "model.pdparams"
CRITERION_FILE = "criterion.pdparams"
OPTIMIZER_FILE = "optimizer.pdopt"
STATE_FILE = "trainer_state.pkl"
LATEST = "latest"


class CheckpointError(ValueError):
    """A checkpoint path that is missing, incomplete or does not fit the model."""


def save_checkpoint(directory, model_state, criterion_state, optimizer_state, trainer_state, config):
    """Write a checkpoint directory atomically and return its path.

    ``optimizer_state`` and ``trainer_state`` None write weights only (converted models):
    such a checkpoint evaluates, exports and initialises training, but cannot be resumed.
    """
    import paddle

    directory = os.path.abspath(directory)
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(directory) + ".tmp-", dir=parent)
    os.chmod(tmp, 0o777 & ~_umask())   # mkdtemp makes it private (0700); a checkpoint gets normal permissions
    try:
        paddle.save(model_state, os.path.join(tmp, MODEL_FILE))
        paddle.save(criterion_state, os.path.join(tmp, CRITERION_FILE))
        if optimizer_state is not None:
            paddle.save(optimizer_state, os.path.join(tmp, OPTIMIZER_FILE))
        if trainer_state is not None:
            with open(os.path.join(tmp, STATE_FILE), "wb") as f:
                pickle.dump(trainer_state, f)
        schema.write_config(tmp, config)
        if os.path.isdir(directory):
            # Re-saving the same iteration: move the old copy aside first, because
            # rename() cannot replace a non-empty directory.
            stale = tempfile.mkdtemp(prefix="." + os.path.basename(directory) + ".old-", dir=parent)
            os.rmdir(stale)
            os.replace(directory, stale)
            os.replace(tmp, directory)
            shutil.rmtree(stale, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _umask():
    mask = os.umask(0o022)   # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def point_latest(directory):
    """Atomically make ``<parent>/latest`` point at ``directory``."""
    parent = os.path.dirname(os.path.abspath(directory))
    link = os.path.join(parent, LATEST)
    tmp_link = os.path.join(parent, ".%s.tmp-%d" % (LATEST, os.getpid()))
    if os.path.lexists(tmp_link):
        os.remove(tmp_link)
    os.symlink(os.path.basename(directory), tmp_link)
    os.replace(tmp_link, link)
    return link


def resolve(path):
    """Return the checkpoint directory for ``path`` (a directory, its ``latest`` or its model file)."""
    if os.path.isfile(path) and os.path.basename(path) == MODEL_FILE:
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        raise CheckpointError("checkpoint %s does not exist (expected a directory such as "
                              "output/ResNet50_vd/latest)" % path)
    if not os.path.isfile(os.path.join(path, MODEL_FILE)) and os.path.isdir(os.path.join(path, LATEST)):
        path = os.path.join(path, LATEST)
    if not os.path.isfile(os.path.join(path, MODEL_FILE)):
        raise CheckpointError("checkpoint %s has no %s; it is not a paddle-reid checkpoint" % (path, MODEL_FILE))
    return os.path.realpath(path)


def read_config(path):
    """The config.json (:mod:`metric_learning.config.schema`) of the checkpoint ``path`` names."""
    return schema.read_config(resolve(path))


class _TrainerStateUnpickler(pickle.Unpickler):
    """Plain data only (dicts, lists, numbers, strings; numpy scalars of older checkpoints): a pickle naming any
    other class or function, e.g. ``os.system`` through ``__reduce__``, is refused before anything runs."""

    ALLOWED = {("collections", "OrderedDict"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError("refusing %s.%s: a trainer state holds only plain data" % (module, name))


def read_trainer_state(path):
    """The trainer state pickle of a checkpoint (iteration, LR schedule, sampler), read without running code."""
    try:
        with open(path, "rb") as f:
            return _TrainerStateUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError("%s is not a trainer state this code wrote, refused (%s); only load checkpoints "
                              "you trust" % (path, exc)) from None


def read_training_state(path):
    """Everything needed to resume training exactly: weights, optimizer, trainer state, config."""
    import paddle

    path = resolve(path)
    missing = [name for name in (CRITERION_FILE, OPTIMIZER_FILE, STATE_FILE, schema.CONFIG_FILE)
               if not os.path.isfile(os.path.join(path, name))]
    if missing:
        raise CheckpointError("checkpoint %s cannot be resumed: missing %s" % (path, ", ".join(missing)))
    trainer_state = read_trainer_state(os.path.join(path, STATE_FILE))
    return {
        "path": path,
        "model": paddle.load(os.path.join(path, MODEL_FILE)),
        "criterion": paddle.load(os.path.join(path, CRITERION_FILE)),
        "optimizer": paddle.load(os.path.join(path, OPTIMIZER_FILE)),
        "trainer": trainer_state,
        "config": read_config(path),
    }


def load_model_for_eval(path):
    """Rebuild the ReIDNet saved at ``path`` in eval mode.

    The architecture comes from the checkpoint's own ``config.json``, so eval never
    depends on flags repeated by hand.
    """
    import paddle

    from metric_learning.models.reid_net import build_model

    path = resolve(path)
    net = build_model(**schema.model_kwargs(read_config(path)))
    state = paddle.load(os.path.join(path, MODEL_FILE))
    assign_state(net, state, path)
    net.eval()
    return net


def assign_state(layer, state, source):
    """Load ``state`` into ``layer`` requiring an exact fit; errors name the checkpoint."""
    own = layer.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if list(own[k].shape) != list(state[k].shape))
    if missing or unexpected or mismatched:
        details = []
        if missing:
            details.append("missing %d (e.g. %s)" % (len(missing), missing[0]))
        if unexpected:
            details.append("unexpected %d (e.g. %s)" % (len(unexpected), unexpected[0]))
        if mismatched:
            k = mismatched[0]
            details.append("shape mismatch %d (e.g. %s: checkpoint %s vs model %s)"
                           % (len(mismatched), k, list(state[k].shape), list(own[k].shape)))
        raise CheckpointError("checkpoint %s does not fit the model: %s" % (source, "; ".join(details)))
    layer.set_state_dict(state)
