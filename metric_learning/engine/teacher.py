"""The teacher of ``--teacher_model``: an exported model (export_model.py) that embeds every training batch.

The student learns to rank each batch as the teacher does (``losses.SimilarityDistillationLoss``). The
teacher runs on the batch exactly as the student sees it, after augmentation, so it must read the same
pixels: the same channels and the same pixel normalisation as training (RGB, x / 255, ImageNet mean / std).
Its embedding width is free, and so is its input size: a teacher exported at another height and width gets
each batch resized to its own input, so a 256x128 teacher can teach a 128x64 student. Market-1501's crops
are about 128x64 to begin with, so the resized batch carries what the teacher would have read from the files.
It runs in inference (Paddle Inference, or ONNX Runtime for ``<prefix>.onnx``), so a teacher costs a forward
pass of an exported model per batch and no memory for gradients.

Several teachers (``--teacher_model a,b --teacher_weights 0.75,0.25``) teach as one: ``TeacherEnsemble``
joins their normalised embeddings so that the cosine of two images is the weighted mean of the members'
cosines, which is all the distillation loss reads. Two models of different training data make mistakes on
different images, so the ensemble ranks better than either and a student can learn more than any one teacher
knows.
"""
import numpy as np

from metric_learning.data import transforms
from metric_learning.deploy.embedders import load_embedder
from metric_learning.errors import ConfigError


class ResizingTeacher:
    """An embedder fed NCHW batches of another height and width: each batch is resized to ``input_shape``.

    Bilinear resizing commutes with the per-channel affine normalisation, so resizing normalised batches
    gives what resizing the images before normalising would have given.
    """

    def __init__(self, embedder):
        self.embedder = embedder
        self.resize = transforms.Resize(embedder.input_shape[1:])

    def __getattr__(self, name):
        return getattr(self.embedder, name)

    def __call__(self, batch):
        n, c, h, w = batch.shape
        # one OpenCV call for the whole batch: its images and channels become the channels of one H x W image
        stacked = np.ascontiguousarray(batch.reshape(n * c, h, w).transpose(1, 2, 0))
        resized = self.resize(stacked)
        return self.embedder(resized.transpose(2, 0, 1).reshape((n, c) + resized.shape[:2]))


def join_embeddings(features, weights):
    """``sqrt(w_i) * normalise(f_i)`` joined along the feature axis, for the ``[N, D_i]`` arrays ``features`` of
    several models of the same N images, with ``weights`` normalised to sum 1.

    The joined rows have unit norm, and the dot product of two of them is ``sum_i w_i cos_i``: the weighted mean
    of the models' cosine similarities. A model of weight 0 drops out.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if len(weights) != len(features) or weights.min() < 0 or not weights.sum() > 0:
        raise ValueError("need one weight >= 0 per model, not all 0; got %s for %d models"
                         % (list(weights), len(features)))
    scales = np.sqrt(weights / weights.sum())
    parts = []
    for scale, rows in zip(scales, features):
        rows = np.asarray(rows, dtype=np.float32)
        parts.append(np.float32(scale) * rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12))
    return np.concatenate(parts, axis=1)


class TeacherEnsemble:
    """Teachers that embed one batch together (:func:`join_embeddings`): the distillation loss reads cosines
    only, and the ensemble's are the weighted mean of its members'."""

    def __init__(self, members, weights):
        self.members = list(members)
        self.weights = list(weights)

    def __call__(self, batch):
        return join_embeddings([member(batch) for member in self.members], self.weights)


def parse_teacher_flags(teacher_model, teacher_weights):
    """``[(path, weight), ...]`` from ``--teacher_model a[,b...]`` and ``--teacher_weights wa[,wb...]``
    (equal weights when not given); ConfigError naming the flag when they do not fit together."""
    if not teacher_model:
        if teacher_weights:
            raise ConfigError("--teacher_weights %s needs --teacher_model" % teacher_weights)
        return []
    paths = [path.strip() for path in teacher_model.split(",")]
    if not all(paths):
        raise ConfigError("--teacher_model %r has an empty entry; give exported models separated by commas"
                         % teacher_model)
    if not teacher_weights:
        return [(path, 1.0 / len(paths)) for path in paths]
    try:
        weights = [float(weight) for weight in teacher_weights.split(",")]
    except ValueError:
        raise ConfigError("--teacher_weights %r: expected numbers separated by commas" % teacher_weights) from None
    if len(weights) != len(paths):
        raise ConfigError("--teacher_weights has %d values for the %d models of --teacher_model"
                         % (len(weights), len(paths)))
    if not all(0 < weight < float("inf") for weight in weights):   # also refuses nan
        raise ConfigError("--teacher_weights must all be finite and > 0, got %s" % teacher_weights)
    return list(zip(paths, weights))


def load_teacher(path, image_shape, use_gpu=False, threads=None):
    """The embedder of the exported model at ``path``, checked to read the training batches of ``image_shape``
    (C, H, W): the same channels and normalisation, resized when its height and width differ. A mismatch
    raises ValueError naming ``--teacher_model`` and what differs."""
    teacher = load_embedder(path, use_gpu=use_gpu, threads=threads)
    if tuple(image_shape)[0] != teacher.input_shape[0]:
        teacher.check_input_shape(image_shape, hint=" given as --teacher_model: the channels must match")
    config = teacher.config
    for key, expected in transforms.NETWORK_INPUT.items():
        value = config[key]
        same = value == expected if isinstance(expected, str) else np.allclose(value, expected, rtol=1e-6)
        if not same:
            raise ValueError("--teacher_model %s expects %s %s but training batches have %s: the teacher would see "
                             "wrongly normalised images" % (path, key, value, expected))
    if tuple(teacher.input_shape) != tuple(image_shape):
        return ResizingTeacher(teacher)
    return teacher
