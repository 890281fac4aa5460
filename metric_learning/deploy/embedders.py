"""The runtimes that embed image batches, and the one loader that picks them (:func:`load_model`).

An *embedder* is any callable ``embed(batch) -> [N, D]`` taking an NCHW float32 numpy batch. An exported model
runs on Paddle Inference (:class:`PredictorEmbedder`, ``<prefix>.json`` + ``.pdiparams``) or ONNX Runtime
(:class:`OnnxEmbedder`, ``<prefix>.onnx``), both described by ``<prefix>.reid.json``
(:mod:`metric_learning.deploy.artifact`); a training checkpoint runs eagerly through
:class:`metric_learning.evaluation.evaluator.LayerEmbedder`.
"""
import importlib
import os

import numpy as np
import paddle
from paddle import inference

from metric_learning.config import schema
from metric_learning.deploy import artifact
from metric_learning.deploy.preprocess import image_file_transform
from metric_learning.evaluation import evaluator
from metric_learning.models import checkpoint
from metric_learning.runtime import select_device

EMBEDDER_BACKENDS = ("auto", "paddle", "onnxruntime")


def cpu_threads(threads=None):
    """Threads for a CPU runtime: ``threads``, else $OMP_NUM_THREADS (importing metric_learning sets it), else 1."""
    return int(threads or os.environ.get("OMP_NUM_THREADS", 1))


def create_predictor(prefix, use_gpu=False, threads=None, mkldnn=True):
    """A Paddle Inference predictor for an exported model (oneDNN on CPU; GPU when asked and available)."""
    prefix = artifact.resolve_prefix(prefix)
    config = inference.Config(prefix + ".json", prefix + ".pdiparams")
    config.disable_glog_info()
    if use_gpu and paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        config.enable_use_gpu(256, 0)
    else:
        config.disable_gpu()
        if mkldnn:
            config.enable_mkldnn()
        config.set_cpu_math_library_num_threads(cpu_threads(threads))
    return inference.create_predictor(config)


def format_shape(shape):
    return ",".join(map(str, shape))


class ExportedEmbedder:
    """``embed(batch NCHW float32) -> np.ndarray [N, D]`` over an exported model; subclasses run it."""

    def __init__(self, model_path, config):
        self.model_path = model_path
        self.config = config

    @property
    def input_shape(self):
        return tuple(self.config["input_shape"])

    def check_input_shape(self, image_shape, flag="--image_shape", hint=""):
        """Refuse an ``image_shape`` (C, H, W) other than this model's input; the one place that says so."""
        if image_shape and tuple(image_shape) != self.input_shape:
            raise ValueError("%s %s does not match the exported model's input %s (%s)%s"
                             % (flag, format_shape(image_shape), format_shape(self.input_shape), self.model_path,
                                hint))

    def __call__(self, batch):
        batch = np.ascontiguousarray(batch, dtype="float32")
        if batch.ndim != 4 or tuple(batch.shape[1:]) != self.input_shape:
            raise ValueError("exported model %s expects batches of shape [N, %d, %d, %d], got %s"
                             % ((self.model_path,) + self.input_shape + (list(batch.shape),)))
        return self.run(batch)

    def run(self, batch):
        raise NotImplementedError


class PredictorEmbedder(ExportedEmbedder):
    """Paddle Inference over ``<prefix>.json`` + ``.pdiparams`` (oneDNN on CPU unless ``mkldnn=False``)."""

    def __init__(self, prefix, use_gpu=False, threads=None, mkldnn=True):
        prefix, config = artifact.read_export_config(prefix)
        super().__init__(prefix, config)
        self.prefix = prefix
        self.predictor = create_predictor(prefix, use_gpu=use_gpu, threads=threads, mkldnn=mkldnn)
        self.input = self.predictor.get_input_handle(config["input_name"])
        self.output = self.predictor.get_output_handle(self.predictor.get_output_names()[0])

    def run(self, batch):
        self.input.reshape(batch.shape)
        self.input.copy_from_cpu(batch)
        self.predictor.run()
        return self.output.copy_to_cpu()


def import_onnx_tool(name):
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ImportError("%s is not installed: ONNX export and inference need paddle2onnx and onnxruntime, pinned in "
                          "requirements.txt (pip install --no-deps -r requirements.txt)" % name) from None


def onnx_session(onnx_path, use_gpu=False, threads=None):
    """The ONNX Runtime session every ONNX model here runs in (ours, and the peer's in the benchmarks)."""
    onnxruntime = import_onnx_tool("onnxruntime")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = cpu_threads(threads)
    options.inter_op_num_threads = 1
    # paddle2onnx leaves a few unused shape constants; ORT drops them itself and would warn once per constant
    options.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if use_gpu and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return onnxruntime.InferenceSession(onnx_path, options, providers=providers)


class OnnxEmbedder(ExportedEmbedder):
    """ONNX Runtime over ``<prefix>.onnx`` (CPU; CUDA when ``use_gpu`` and onnxruntime-gpu provide it)."""

    def __init__(self, path, use_gpu=False, threads=None):
        onnx_path, config_path = artifact.resolve_onnx(path)
        super().__init__(onnx_path, artifact.read_config_file(config_path))
        self.session = onnx_session(onnx_path, use_gpu=use_gpu, threads=threads)
        names = [i.name for i in self.session.get_inputs()]
        if names != [self.config["input_name"]]:
            raise ValueError("ONNX model %s has inputs %s but its config %s says %r"
                             % (onnx_path, names, config_path, self.config["input_name"]))

    def run(self, batch):
        return self.session.run(None, {self.config["input_name"]: batch})[0]


def load_embedder(path, backend="auto", use_gpu=False, threads=None, mkldnn=True):
    """The embedder for an exported model: ``<prefix>.onnx`` runs on ONNX Runtime and a Paddle export
    (``<prefix>``, ``<prefix>.json`` or its directory) on Paddle Inference when ``backend`` is ``auto``;
    ``onnxruntime`` takes ``<prefix>.onnx`` beside the Paddle files."""
    if backend not in EMBEDDER_BACKENDS:
        raise ValueError("backend must be one of %s, got %r" % (", ".join(EMBEDDER_BACKENDS), backend))
    path = str(path)
    if backend == "onnxruntime" or (backend == "auto" and path.endswith(".onnx")):
        return OnnxEmbedder(path, use_gpu=use_gpu, threads=threads)
    if path.endswith(".onnx"):
        raise ValueError("%s is an ONNX model; backend='paddle' needs the Paddle export (<prefix>.json)" % path)
    return PredictorEmbedder(path, use_gpu=use_gpu, threads=threads, mkldnn=mkldnn)


def load_model(checkpoint_dir=None, inference_model=None, image_shape=None, use_gpu=False):
    """``(embed, image_shape, transform)`` for a training checkpoint or an exported model, the way eval.py and
    infer.py load either: an export brings its own input shape and normalisation (``--image_shape``, when given,
    must match it); a checkpoint runs at ``image_shape``, else the shape its config.json records."""
    if inference_model:
        embed = load_embedder(inference_model, use_gpu=use_gpu)
        embed.check_input_shape(image_shape)
        return embed, embed.input_shape, image_file_transform(embed.config)
    select_device(use_gpu)
    net = checkpoint.load_model_for_eval(checkpoint_dir)
    shape = tuple(image_shape or schema.image_shape(checkpoint.read_config(checkpoint_dir)))
    return evaluator.LayerEmbedder(net), shape, None
