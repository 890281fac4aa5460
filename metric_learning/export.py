"""Export a trained ReIDNet as a Paddle inference model that trackers load.

Paddle 3 writes ``<prefix>.json`` (the PIR program) and ``<prefix>.pdiparams``.
The old ``__model__`` / ``.pdmodel`` program format can no longer be written by
Paddle 3.3; consumers that need it must use Paddle <= 2.6 or our ONNX export.

Beside the model we write ``<prefix>.reid.json``, a small config that consumers
read instead of guessing preprocessing: input name, H x W, channel order, mean /
std, feature dimension and whether outputs are L2-normalised.
"""
import json
import os

import paddle

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CONFIG_SUFFIX = ".reid.json"
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
        "channel_order": "RGB",
        "layout": "NCHW",
        "pixel_scale": 1.0 / 255.0,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
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
    with open(prefix + CONFIG_SUFFIX) as f:
        return prefix, json.load(f)


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
        config.set_cpu_math_library_num_threads(int(threads or os.environ.get("OMP_NUM_THREADS", 1)))
    return inference.create_predictor(config)


class PredictorEmbedder:
    """Callable ``embed(batch NCHW float32) -> np.ndarray [N, D]`` over an exported model."""

    def __init__(self, prefix, use_gpu=False, threads=None):
        self.prefix, self.config = read_export_config(prefix)
        self.predictor = create_predictor(self.prefix, use_gpu=use_gpu, threads=threads)
        self.input = self.predictor.get_input_handle(self.config["input_name"])
        self.output = self.predictor.get_output_handle(self.predictor.get_output_names()[0])

    @property
    def input_shape(self):
        return tuple(self.config["input_shape"])

    def __call__(self, batch):
        import numpy as np

        batch = np.ascontiguousarray(batch, dtype="float32")
        if batch.ndim != 4 or tuple(batch.shape[1:]) != self.input_shape:
            raise ValueError("exported model %s expects batches of shape [N, %d, %d, %d], got %s"
                             % ((self.prefix,) + self.input_shape + (list(batch.shape),)))
        self.input.reshape(batch.shape)
        self.input.copy_from_cpu(batch)
        self.predictor.run()
        return self.output.copy_to_cpu()
