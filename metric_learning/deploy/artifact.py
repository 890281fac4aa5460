"""The files of an exported model, and ``<prefix>.reid.json``, the config beside them: written and read here only.

An export is ``<prefix>.json`` (the PIR program) + ``<prefix>.pdiparams``, optionally ``<prefix>.onnx``, and
``<prefix>.reid.json``: what a consumer needs instead of guessing the preprocessing (input name, C x H x W,
channel order, pixel scale, mean / std, feature dimension, whether outputs are L2-normalised, whether the model
averages each image with its mirror).
"""
import json
import os

from metric_learning.data import transforms

CONFIG_SUFFIX = ".reid.json"
CONFIG_KEYS = ("input_name", "input_shape", "channel_order", "pixel_scale", "mean", "std", "feature_dim",
               "l2_normalized")


def write_config(prefix, input_name, image_shape, feature_dim, normalize, extra_config=None, flip=False):
    """Write ``<prefix>.reid.json`` for the model just saved at ``prefix``; return the config dict.

    ``flip``: the model averages each image's embedding with its mirror's itself (``export_model.py --flip
    True``); a consumer that flips too only doubles the work. Configs written before it have no ``flip``: False.
    """
    config = {
        "model_file": os.path.basename(prefix) + ".json",
        "params_file": os.path.basename(prefix) + ".pdiparams",
        "input_name": input_name,
        "input_shape": [int(v) for v in image_shape],
        **transforms.NETWORK_INPUT,
        "layout": "NCHW",
        "feature_dim": int(feature_dim),
        "l2_normalized": bool(normalize),
        "flip": bool(flip),
    }
    config.update(extra_config or {})
    return save_config(prefix, config)


def save_config(prefix, config):
    """Write ``config`` as ``<prefix>.reid.json``; return it."""
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
