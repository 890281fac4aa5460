"""``config.json``, the record in every checkpoint of how to rebuild its network: written and read here only.

    {"model": {"model": "MobileNetV2", "embedding_size": 0, "pooling": "avg", "last_stride": 1, "bnneck": true,
               "head": "global", "num_parts": 6},
     "image_shape": [3, 256, 128], "loss_name": "softmax", "argv": [...the training command's flags...]}

A converted model (``converted_from``: the source file) has empty ``argv``; a config written before the part heads
has no ``head`` / ``num_parts`` and rebuilds the global head. ``model`` holds the keyword arguments
of :func:`metric_learning.models.reid_net.build_model`; eval, export and fine-tuning rebuild the network from it,
never from flags repeated by hand.
"""
import json
import os
import sys

CONFIG_FILE = "config.json"
# the input C,H,W of a model whose config does not say, and of --image_shape: the usual ReID shape
DEFAULT_IMAGE_SHAPE = (3, 256, 128)


def training_config(args):
    """The config of a training run, from its parsed flags."""
    return {"model": {"model": args.model, "embedding_size": args.embedding_size, "pooling": args.pooling,
                      "last_stride": args.last_stride, "bnneck": args.bnneck, "head": args.head,
                      "num_parts": args.num_parts},
            "image_shape": list(args.image_shape),
            "loss_name": args.loss_name,
            "argv": sys.argv[1:]}


def converted_config(model_kwargs, image_shape, source):
    """The config of a model converted from another framework's file ``source`` (no training command)."""
    return {"model": dict(model_kwargs), "image_shape": list(image_shape), "loss_name": "softmax", "argv": [],
            "converted_from": os.path.abspath(source)}


def write_config(directory, config):
    with open(os.path.join(directory, CONFIG_FILE), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)


def read_config(directory):
    """The config.json of the checkpoint directory ``directory``."""
    with open(os.path.join(directory, CONFIG_FILE)) as f:
        return json.load(f)


def model_kwargs(config):
    """Keyword arguments of ``build_model`` that rebuild the checkpoint's network."""
    return config["model"]


def image_shape(config):
    """The (C, H, W) the network was trained at; :data:`DEFAULT_IMAGE_SHAPE` for a config without one."""
    return tuple(config.get("image_shape") or DEFAULT_IMAGE_SHAPE)
