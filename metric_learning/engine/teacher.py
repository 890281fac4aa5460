"""The teacher of ``--teacher_model``: an exported model (export_model.py) that embeds every training batch.

The student learns to rank each batch as the teacher does (``losses.SimilarityDistillationLoss``). The
teacher runs on the batch exactly as the student sees it, after augmentation, so it must read the same
pixels: the same channels and the same pixel normalisation as training (RGB, x / 255, ImageNet mean / std).
Its embedding width is free, and so is its input size: a teacher exported at another height and width gets
each batch resized to its own input, so a 256x128 teacher can teach a 128x64 student. Market-1501's crops
are about 128x64 to begin with, so the resized batch carries what the teacher would have read from the files.
It runs in inference (Paddle Inference, or ONNX Runtime for ``<prefix>.onnx``), so a teacher costs a forward
pass of an exported model per batch and no memory for gradients.
"""
import numpy as np

from metric_learning.data import transforms
from metric_learning.deploy.embedders import load_embedder


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
