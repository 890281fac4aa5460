"""Export a trained ReIDNet as a Paddle inference model that trackers load.

Paddle 3 writes ``<prefix>.json`` (the PIR program) and ``<prefix>.pdiparams``.
The old ``__model__`` / ``.pdmodel`` program format can no longer be written by
Paddle 3.3; consumers that need it must use Paddle <= 2.6 or our ONNX export.

Beside the model we write ``<prefix>.reid.json`` (:mod:`metric_learning.deploy.artifact`),
a small config that consumers read instead of guessing preprocessing.

:func:`export_onnx` converts the exported program to ``<prefix>.onnx`` (paddle2onnx);
the same ``<prefix>.reid.json`` describes it. :mod:`metric_learning.deploy.embedders`
runs either file on ready NCHW batches; :class:`metric_learning.deploy.extractor.Extractor`
adds cropping and preprocessing.
"""
import os

import numpy as np
import paddle
from paddle.static import InputSpec

from metric_learning.deploy import artifact
from metric_learning.deploy.embedders import OnnxEmbedder, PredictorEmbedder, import_onnx_tool

# opset 11 (2019) loads in any current ONNX Runtime or TensorRT; paddle2onnx raises it if an op needs a newer one
ONNX_OPSET = 11
INPUT_NAMES = {
    "x": "default",
    "image": "the classic metric_learning consumer",
    "crops": "PaddleDetection PP-Tracking DeepSORT, which feeds tensors by name",
}


class EmbeddingModel(paddle.nn.Layer):
    """The network as deployed: image batch in, (optionally L2-normalised) embedding out.

    ``flip``: the embedding is the mean of the image's and its horizontal mirror's, taken before the
    normalisation, as ``eval.py --flip True`` computes it (``evaluator.extract_features``). Both halves run as
    one batch of 2N images, so a consumer pays one call of the network, of twice the batch.
    """

    def __init__(self, net, normalize, flip=False):
        super().__init__()
        self.net = net
        self.normalize = normalize
        self.flip = flip

    def embed(self, images):
        if self.flip:
            both = self.net(paddle.concat([images, paddle.flip(images, axis=[3])], axis=0))
            # [2N, D] -> [2, N, D] -> mean: a split would export with a size of -1 for the dynamic batch,
            # which ONNX Runtime refuses
            embedding = both.reshape([2, -1, both.shape[1]]).mean(axis=0)
        else:
            embedding = self.net(images)
        if self.normalize:
            embedding = paddle.nn.functional.normalize(embedding, p=2, axis=1)
        return embedding


# paddle.jit.save names the program's input after the forward() argument (and
# refuses an InputSpec name that differs), and dy2static needs real source code,
# so each supported input name has its own one-line forward.
class _InputX(EmbeddingModel):
    def forward(self, x):
        return self.embed(x)


class _InputImage(EmbeddingModel):
    def forward(self, image):
        return self.embed(image)


class _InputCrops(EmbeddingModel):
    def forward(self, crops):
        return self.embed(crops)


_MODEL_BY_INPUT_NAME = {"x": _InputX, "image": _InputImage, "crops": _InputCrops}


def export_inference_model(net, prefix, image_shape, input_name="x", normalize=True, extra_config=None, flip=False):
    """Write ``prefix.json``, ``prefix.pdiparams`` and ``prefix.reid.json``; return the config dict.

    ``image_shape`` is (C, H, W); the batch dimension stays dynamic. ``flip``: the graph averages each image's
    embedding with its mirror's (see :class:`EmbeddingModel`), recorded as ``"flip": true`` in the config.
    """
    if input_name not in _MODEL_BY_INPUT_NAME:
        raise ValueError("--input_name must be one of %s; got %r" % (", ".join(INPUT_NAMES), input_name))
    channels, height, width = image_shape
    net.eval()
    model = _MODEL_BY_INPUT_NAME[input_name](net, normalize, flip)
    model.eval()
    out_dir = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(out_dir, exist_ok=True)
    paddle.jit.save(model, prefix, input_spec=[InputSpec([None, channels, height, width], "float32", name=input_name)])
    return artifact.write_config(prefix, input_name, image_shape, net.embedding_dim, normalize, extra_config,
                                 flip=flip)


def export_onnx(prefix, opset_version=ONNX_OPSET):
    """Convert the exported ``<prefix>.json`` + ``.pdiparams`` to ``<prefix>.onnx`` with paddle2onnx; return its path."""
    prefix = artifact.resolve_prefix(prefix)
    paddle2onnx = import_onnx_tool("paddle2onnx")
    onnx_path = prefix + ".onnx"
    if os.path.exists(onnx_path):
        os.remove(onnx_path)  # so that a stale file cannot pass for this conversion's result
    try:
        # optimize_tool="none": the default ("polygraphy") pip-installs packages during the export; ONNX Runtime
        # folds constants itself when it loads the model. paddle2onnx reports a failed conversion by logging it
        # and calling sys.exit, so the written file is the only reliable evidence of success.
        paddle2onnx.export(prefix + ".json", prefix + ".pdiparams", save_file=onnx_path,
                           opset_version=opset_version, enable_onnx_checker=True, optimize_tool="none")
    except SystemExit:
        pass
    if not os.path.isfile(onnx_path) or os.path.getsize(onnx_path) == 0:
        raise RuntimeError("paddle2onnx could not convert %s.json to ONNX (its log above says why); the Paddle "
                           "model beside it is unaffected" % prefix)
    return onnx_path


def onnx_parity(prefix, batch_size=8, seed=0):
    """Max absolute difference between Paddle Inference and ONNX Runtime on one random batch."""
    paddle_embed = PredictorEmbedder(prefix)
    onnx_embed = OnnxEmbedder(paddle_embed.prefix + ".onnx")
    batch = np.random.default_rng(seed).normal(size=(batch_size,) + paddle_embed.input_shape).astype("float32")
    return float(np.abs(paddle_embed(batch) - onnx_embed(batch)).max())
