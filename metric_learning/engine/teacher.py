"""The teacher of ``--teacher_model``: an exported model (export_model.py) that embeds every training batch.

The student learns to rank each batch as the teacher does (``losses.SimilarityDistillationLoss``). The
teacher runs on the batch exactly as the student sees it, after augmentation, so it must read the same
tensor: the same C x H x W and the same pixel normalisation as training (RGB, x / 255, ImageNet mean / std).
Its embedding width is free. It runs in inference (Paddle Inference, or ONNX Runtime for ``<prefix>.onnx``),
so a teacher costs a forward pass of an exported model per batch and no memory for gradients.
"""
import numpy as np

from metric_learning.data import transforms
from metric_learning.deploy.embedders import load_embedder


def load_teacher(path, image_shape, use_gpu=False, threads=None):
    """The embedder of the exported model at ``path``, checked to read the training batches of ``image_shape``
    (C, H, W) as they are. A mismatch raises ValueError naming ``--teacher_model`` and what differs."""
    teacher = load_embedder(path, use_gpu=use_gpu, threads=threads)
    teacher.check_input_shape(image_shape, hint=" given as --teacher_model; export the teacher at the student's size")
    config = teacher.config
    for key, expected in transforms.NETWORK_INPUT.items():
        value = config[key]
        same = value == expected if isinstance(expected, str) else np.allclose(value, expected, rtol=1e-6)
        if not same:
            raise ValueError("--teacher_model %s expects %s %s but training batches have %s: the teacher would see "
                             "wrongly normalised images" % (path, key, value, expected))
    return teacher
