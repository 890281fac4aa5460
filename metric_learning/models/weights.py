"""Load pretrained weights or checkpoints into a model, matching tensors by name.

Accepted sources (``read_state``):

- a ``.pdparams`` file (``paddle.save`` of a state dict): PaddleClas pretrained
  backbones, our own training checkpoints; a path without the suffix works too, as
  with Paddle's ``save(..., "dir/epoch_10")`` convention;
- a Paddle 1.x parameter directory (``fluid.io.save_params``/``save_persistables``):
  one file per parameter, named by the 1.x parameter name, holding one serialized
  ``LoDTensor`` (format in ``read_lod_tensor``).

A file tensor is matched to a model tensor when its name is the model's structured
key (``backbone.blocks.0.conv0.conv.weight``), the key relative to a backbone
(PaddleClas files), that relative key with a ``backbone.`` prefix (a ReIDNet
checkpoint loaded into a bare backbone), or the Paddle 1.x name of that tensor
(``backbone.legacy_param_names``, see ``metric_learning.models.backbones``) -- and shapes
agree. A tensor of a layer's deep copy (``weight_copy_sources``, MGN's part branches) the file does not hold
takes its original's. Everything else is reported, never silently dropped: ``LoadReport``.
"""
import os
import struct
from dataclasses import dataclass, field

import numpy as np
import paddle

# framework.proto VarType.Type -> numpy dtype (Paddle 1.x TensorDesc.data_type).
PADDLE1_DTYPES = {0: np.bool_, 1: np.int16, 2: np.int32, 3: np.int64, 4: np.float16, 5: np.float32,
                  6: np.float64, 20: np.uint8, 21: np.int8}


@dataclass
class LoadReport:
    """What ``load_weights`` did. Names are model keys, except ``unexpected`` (file names).

    ``mismatched`` holds ``(model_key, file_name, file_shape, model_shape)``.
    """
    source: str
    target: str
    loaded: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    mismatched: list = field(default_factory=list)

    def __str__(self):
        total = len(self.loaded) + len(self.missing) + len(self.mismatched)
        lines = ["loaded %d of %d tensors of %s from %s" % (len(self.loaded), total, self.target, self.source)]
        if self.mismatched:
            lines.append("  skipped, shape differs (%d): %s" % (len(self.mismatched), _preview(
                "%s: file %s vs model %s" % (key, list(fs), list(ms)) for key, _, fs, ms in self.mismatched)))
        if self.missing:
            lines.append("  not in file, keep their initial values (%d): %s" % (len(self.missing),
                                                                                _preview(self.missing)))
        if self.unexpected:
            lines.append("  in file but not in model, unused (%d): %s" % (len(self.unexpected),
                                                                         _preview(self.unexpected)))
        return "\n".join(lines)


def _preview(names, limit=8):
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (" ... and %d more" % (len(names) - limit) if len(names) > limit else "")


def describe(model):
    """Short human name of a model for messages: ``ReIDNet(...)``, a backbone name, or the class."""
    return getattr(model, "description", None) or getattr(model, "backbone_name", None) or type(model).__name__


# --- Paddle 1.x LoDTensor files -----------------------------------------------------

def _read_varint(buf, pos):
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _parse_tensor_desc(buf):
    """Decode ``message TensorDesc { required Type data_type = 1; repeated int64 dims = 2; }``."""
    data_type, dims, pos = None, [], 0
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos)
        field_number, wire_type = tag >> 3, tag & 7
        if field_number == 1 and wire_type == 0:
            data_type, pos = _read_varint(buf, pos)
        elif field_number == 2 and wire_type == 0:
            dim, pos = _read_varint(buf, pos)
            dims.append(dim)
        elif field_number == 2 and wire_type == 2:  # packed encoding, also valid proto2
            size, pos = _read_varint(buf, pos)
            end = pos + size
            while pos < end:
                dim, pos = _read_varint(buf, pos)
                dims.append(dim)
        else:
            raise ValueError("unexpected TensorDesc field %d (wire type %d)" % (field_number, wire_type))
    if data_type is None:
        raise ValueError("TensorDesc has no data_type")
    # dims are int64: a varint >= 2**63 is negative (-1 = unknown), never valid for stored data.
    if any(dim >= 1 << 63 for dim in dims):
        raise ValueError("TensorDesc has a negative dimension %s" % dims)
    return data_type, dims


def read_lod_tensor(path):
    """Read one Paddle 1.x serialized ``LoDTensor`` file as a numpy array.

    Layout (paddle/fluid/framework/lod_tensor.cc SerializeToStream, little-endian):
    ``uint32 version (0)``, ``uint64 lod_level``, per level ``uint64 nbytes`` + that many
    bytes of ``size_t`` offsets; then the tensor: ``uint32 version (0)``, ``int32 desc_size``,
    ``desc_size`` bytes of ``TensorDesc`` protobuf, raw data (C order). The LoD (sequence
    offsets) carries no information for parameters and is skipped.
    """
    with open(path, "rb") as f:
        buf = f.read()
    try:
        (version,), pos = struct.unpack_from("<I", buf, 0), 4
        if version != 0:
            raise ValueError("LoDTensor version %d, expected 0" % version)
        (lod_level,), pos = struct.unpack_from("<Q", buf, pos), pos + 8
        for _ in range(lod_level):
            (nbytes,), pos = struct.unpack_from("<Q", buf, pos), pos + 8
            pos += nbytes
        (tensor_version, desc_size), pos = struct.unpack_from("<Ii", buf, pos), pos + 8
        if tensor_version != 0:
            raise ValueError("Tensor version %d, expected 0" % tensor_version)
        data_type, dims = _parse_tensor_desc(buf[pos:pos + desc_size])
        pos += desc_size
        if data_type not in PADDLE1_DTYPES:
            raise ValueError("unsupported data type %d" % data_type)
        dtype = np.dtype(PADDLE1_DTYPES[data_type])
        expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
        if len(buf) - pos != expected:
            raise ValueError("holds %d data bytes, shape %s of %s needs %d" % (len(buf) - pos, dims, dtype, expected))
    except (ValueError, struct.error) as e:
        raise ValueError("%s is not a Paddle 1.x LoDTensor file: %s" % (path, e)) from None
    return np.frombuffer(buf, dtype=dtype, offset=pos).reshape(dims).copy()


def read_paddle1_dir(dirname):
    """Read a Paddle 1.x per-parameter directory into ``{parameter name: array}``.

    Hidden files and Paddle's reserved ``__model__``/``__params__`` files are not parameters.
    """
    state = {}
    for name in sorted(os.listdir(dirname)):
        path = os.path.join(dirname, name)
        if name.startswith((".", "__")) or not os.path.isfile(path):
            continue
        state[name] = read_lod_tensor(path)
    return state


# --- reading any source -------------------------------------------------------------

def resolve_weights_path(path):
    """``path`` itself, or ``path + '.pdparams'``; FileNotFoundError naming both otherwise."""
    if os.path.exists(path):
        return path
    if os.path.isfile(path + ".pdparams"):
        return path + ".pdparams"
    raise FileNotFoundError("weights not found: neither %s nor %s.pdparams exists" % (path, path))


def read_state(path):
    """Read a ``.pdparams`` file or a Paddle 1.x directory into ``{name: np.ndarray}``."""
    path = resolve_weights_path(path)
    if os.path.isdir(path):
        pdparams = sorted(name for name in os.listdir(path) if name.endswith(".pdparams"))
        if pdparams:
            raise ValueError("%s is not a Paddle 1.x parameter directory: it holds %s; pass one of those files"
                             % (path, ", ".join(pdparams)))
        state = read_paddle1_dir(path)
        if not state:
            raise ValueError("%s holds no parameter files" % path)
        return state
    try:
        state = paddle.load(path, return_numpy=True)
    except Exception as e:  # paddle raises assorted types for a file that is not its own
        raise ValueError("cannot read %s as a Paddle .pdparams file: %s" % (path, e)) from None
    if not isinstance(state, dict):
        raise ValueError("%s holds a %s, not a state dict" % (path, type(state).__name__))
    return {name: np.asarray(value) for name, value in state.items()}


# --- matching and loading -------------------------------------------------------------

def _names_in_files(model):
    """``{name a file may use: model key}``; a model's own keys take precedence."""
    aliases = {}
    for prefix, layer in model.named_sublayers(include_self=True):
        legacy = getattr(layer, "legacy_param_names", None)
        if legacy is None:
            continue
        for sub in layer.state_dict():
            key = prefix + "." + sub if prefix else sub
            for alias in (sub, "backbone." + sub, legacy.get(sub)):
                if alias:
                    aliases.setdefault(alias, key)
    aliases.update({key: key for key in model.state_dict()})
    return aliases


def _copy_sources(model):
    """``{model key: model key of the tensor it is a copy of}`` from the layers' ``weight_copy_sources``."""
    sources = {}
    for prefix, layer in model.named_sublayers(include_self=True):
        for copy_key, source_key in (getattr(layer, "weight_copy_sources", None) or {}).items():
            sources[prefix + "." + copy_key if prefix else copy_key] = (
                prefix + "." + source_key if prefix else source_key)
    return sources


def match_state(model, file_state, source="<state>"):
    """Pair file tensors with model tensors. Returns ``(LoadReport, {model key: array})``."""
    model_state = model.state_dict()
    aliases = _names_in_files(model)
    report = LoadReport(source=source, target=describe(model))
    chosen = {}
    # Exact names first, so a file holding both spellings of a tensor loads the exact one.
    for name in sorted(file_state, key=lambda n: n not in model_state):
        key = aliases.get(name)
        if key is None or key in chosen:
            report.unexpected.append(name)
            continue
        array = file_state[name]
        model_shape = tuple(model_state[key].shape)
        if tuple(array.shape) != model_shape:
            report.mismatched.append((key, name, tuple(array.shape), model_shape))
            chosen[key] = None
            continue
        chosen[key] = array
        report.loaded.append(key)
    # a deep copy of a layer (MGN's part branches) starts from its original's tensor when the file has none of
    # its own: ImageNet weights hold one last stage, which every branch's copy starts from
    for copy_key, source_key in _copy_sources(model).items():
        if copy_key not in chosen and chosen.get(source_key) is not None:
            chosen[copy_key] = chosen[source_key]
            report.loaded.append(copy_key)
    report.missing = [key for key in model_state if key not in chosen]
    return report, {key: array for key, array in chosen.items() if array is not None}


def load_weights(model, path, verbose=True):
    """Load the tensors of ``path`` that fit ``model``; print and return a ``LoadReport``.

    Tensors whose shape differs (e.g. an embedding FC of another size) and names the
    model lacks are skipped and reported. Raises ValueError "checkpoint X does not fit
    model Y" when nothing at all fits, which always means a wrong file or model.
    """
    return load_state(model, read_state(path), path, verbose)


def load_state(model, file_state, source, verbose=True):
    """``load_weights`` for a state already read from the file ``source``."""
    report, arrays = match_state(model, file_state, source=source)
    if not arrays:
        raise ValueError("checkpoint %s does not fit model %s: none of its %d tensors (%s) matches a model "
                         "tensor by name and shape" % (source, report.target, len(file_state),
                                                       _preview(sorted(file_state), limit=4)))
    model_state = model.state_dict()
    for key, array in arrays.items():
        tensor = model_state[key]
        tensor.set_value(array.astype(paddle.base.data_feeder.convert_dtype(tensor.dtype), copy=False))
    if verbose:
        print(report)
    return report
