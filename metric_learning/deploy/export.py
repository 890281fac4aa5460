"""Export a trained ReIDNet as a Paddle inference model that trackers load.

Paddle 3 writes ``<prefix>.json`` (the PIR program) and ``<prefix>.pdiparams``.
The old ``__model__`` / ``.pdmodel`` program format can no longer be written by
Paddle 3.3; consumers that need it must use Paddle <= 2.6 or our ONNX export.

Beside the model we write ``<prefix>.reid.json``, a small config that consumers
read instead of guessing preprocessing: input name, H x W, channel order, mean /
std, feature dimension and whether outputs are L2-normalised.

:func:`export_onnx` converts the exported program to ``<prefix>.onnx`` (paddle2onnx);
the same ``<prefix>.reid.json`` describes it. :class:`PredictorEmbedder` (Paddle
Inference) and :class:`OnnxEmbedder` (ONNX Runtime) run either file on ready NCHW
batches; :class:`metric_learning.deploy.extractor.Extractor` adds cropping and preprocessing.
"""
import importlib
import json
import os

import numpy as np
import paddle

from metric_learning.data import transforms

CONFIG_SUFFIX = ".reid.json"
CONFIG_KEYS = ("input_name", "input_shape", "channel_order", "pixel_scale", "mean", "std", "feature_dim",
               "l2_normalized")
# opset 11 (2019) loads in any current ONNX Runtime or TensorRT; paddle2onnx raises it if an op needs a newer one
ONNX_OPSET = 11
INPUT_NAMES = {
    "x": "default",
    "image": "the classic metric_learning consumer",
    "crops": "PaddleDetection PP-Tracking DeepSORT, which feeds tensors by name",
}


class EmbeddingModel(paddle.nn.Layer):
    """The network as deployed: image batch in, (optionally L2-normalised) embedding out."""

    def __init__(self, net, normalize):
        super().__init__()
        self.net = net
        self.normalize = normalize

    def embed(self, images):
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


def export_inference_model(net, prefix, image_shape, input_name="x", normalize=True, extra_config=None):
    """Write ``prefix.json``, ``prefix.pdiparams`` and ``prefix.reid.json``; return the config dict.

    ``image_shape`` is (C, H, W); the batch dimension stays dynamic.
    """
    from paddle.static import InputSpec

    if input_name not in _MODEL_BY_INPUT_NAME:
        raise ValueError("--input_name must be one of %s; got %r" % (", ".join(INPUT_NAMES), input_name))
    channels, height, width = image_shape
    net.eval()
    model = _MODEL_BY_INPUT_NAME[input_name](net, normalize)
    model.eval()
    out_dir = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(out_dir, exist_ok=True)
    paddle.jit.save(model, prefix, input_spec=[InputSpec([None, channels, height, width], "float32", name=input_name)])
    config = {
        "model_file": os.path.basename(prefix) + ".json",
        "params_file": os.path.basename(prefix) + ".pdiparams",
        "input_name": input_name,
        "input_shape": [channels, height, width],
        **transforms.NETWORK_INPUT,
        "layout": "NCHW",
        "feature_dim": int(net.embedding_dim),
        "l2_normalized": bool(normalize),
    }
    config.update(extra_config or {})
    with open(prefix + CONFIG_SUFFIX, "w") as f:
        json.dump(config, f, indent=2)
    return config


def read_export_config(prefix):
    """Read the config beside an exported model; ``prefix`` may also be the directory holding one model."""
    prefix = resolve_prefix(prefix)
    return prefix, read_config_file(prefix + CONFIG_SUFFIX)


def read_config_file(path):
    """The preprocessing config at ``path``, checked to have every field a consumer reads."""
    try:
        with open(path) as f:
            config = json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError("%s is not valid JSON (%s); re-export the model with export_model.py" % (path, exc)) from None
    missing = [key for key in CONFIG_KEYS if key not in config]
    if missing:
        raise ValueError("%s lacks %s; re-export the model with export_model.py" % (path, ", ".join(missing)))
    return config


def resolve_prefix(path):
    """Accept ``dir/model``, ``dir/model.json``, ``dir/model.reid.json`` or a directory with exactly one model."""
    for suffix in (CONFIG_SUFFIX, ".pdiparams", ".json"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    if os.path.isdir(path):
        found = sorted(name[: -len(CONFIG_SUFFIX)] for name in os.listdir(path) if name.endswith(CONFIG_SUFFIX))
        if len(found) != 1:
            raise FileNotFoundError("%s: expected exactly one exported model (*%s) in the directory, found %d"
                                    % (path, CONFIG_SUFFIX, len(found)))
        path = os.path.join(path, found[0])
    for suffix in (".json", ".pdiparams", CONFIG_SUFFIX):
        if not os.path.isfile(path + suffix):
            raise FileNotFoundError("exported model %s is incomplete: %s%s is missing (export with export_model.py)"
                                    % (path, os.path.basename(path), suffix))
    return path


def cpu_threads(threads=None):
    """Threads for a CPU runtime: ``threads``, else $OMP_NUM_THREADS (importing metric_learning sets it), else 1."""
    return int(threads or os.environ.get("OMP_NUM_THREADS", 1))


def create_predictor(prefix, use_gpu=False, threads=None, mkldnn=True):
    """A Paddle Inference predictor for an exported model (oneDNN on CPU; GPU when asked and available)."""
    from paddle import inference

    prefix = resolve_prefix(prefix)
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


class ExportedEmbedder:
    """``embed(batch NCHW float32) -> np.ndarray [N, D]`` over an exported model; subclasses run it."""

    def __init__(self, model_path, config):
        self.model_path = model_path
        self.config = config

    @property
    def input_shape(self):
        return tuple(self.config["input_shape"])

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
        prefix, config = read_export_config(prefix)
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


def resolve_onnx(path):
    """``(path of <prefix>.onnx, path of <prefix>.reid.json)`` for ``<prefix>.onnx`` or ``<prefix>``; both must exist."""
    onnx_path = path if path.endswith(".onnx") else path + ".onnx"
    config_path = onnx_path[: -len(".onnx")] + CONFIG_SUFFIX
    if not os.path.isfile(onnx_path):
        raise FileNotFoundError("ONNX model %s does not exist (export_model.py --onnx True writes it)" % onnx_path)
    if not os.path.isfile(config_path):
        raise FileNotFoundError("ONNX model %s has no preprocessing config: %s is missing (export_model.py writes "
                                "it beside the model)" % (onnx_path, config_path))
    return onnx_path, config_path


class OnnxEmbedder(ExportedEmbedder):
    """ONNX Runtime over ``<prefix>.onnx`` (CPU; CUDA when ``use_gpu`` and onnxruntime-gpu provide it)."""

    def __init__(self, path, use_gpu=False, threads=None):
        onnxruntime = _import_onnx_tool("onnxruntime")
        onnx_path, config_path = resolve_onnx(path)
        super().__init__(onnx_path, read_config_file(config_path))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = cpu_threads(threads)
        options.inter_op_num_threads = 1
        # paddle2onnx leaves a few unused shape constants; ORT drops them itself and would warn once per constant
        options.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        if use_gpu and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = onnxruntime.InferenceSession(onnx_path, options, providers=providers)
        names = [i.name for i in self.session.get_inputs()]
        if names != [self.config["input_name"]]:
            raise ValueError("ONNX model %s has inputs %s but its config %s says %r"
                             % (onnx_path, names, config_path, self.config["input_name"]))

    def run(self, batch):
        return self.session.run(None, {self.config["input_name"]: batch})[0]


EMBEDDER_BACKENDS = ("auto", "paddle", "onnxruntime")


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


def _import_onnx_tool(name):
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ImportError("%s is not installed: ONNX export and inference need paddle2onnx and onnxruntime, pinned in "
                          "requirements.txt (pip install --no-deps -r requirements.txt)" % name) from None


def export_onnx(prefix, opset_version=ONNX_OPSET):
    """Convert the exported ``<prefix>.json`` + ``.pdiparams`` to ``<prefix>.onnx`` with paddle2onnx; return its path."""
    prefix = resolve_prefix(prefix)
    paddle2onnx = _import_onnx_tool("paddle2onnx")
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
