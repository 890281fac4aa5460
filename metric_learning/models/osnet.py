"""OSNet, the omni-scale network, written natively in Paddle.

Zhou, Yang, Cavallaro, Xiang, "Omni-Scale Feature Learning for Person
Re-Identification", ICCV 2019. The building blocks, as in the paper:

- **Lite 3x3**: a linear 1x1 conv followed by a depthwise 3x3 conv, then BN + ReLU
  (the paper's "Lite 3x3" layer, section 3.1): a 3x3 receptive field for a fraction
  of a dense 3x3's cost.
- **Streams**: a block's bottleneck feature runs through four streams of 1, 2, 3 and
  4 stacked Lite 3x3 layers, receptive fields 3, 5, 7 and 9 (section 3.2).
- **Unified aggregation gate** (AG): one channel gate, shared by the four streams
  (the same weights applied to each), scales every stream by a per-channel weight
  computed from the stream itself (global average pool -> FC -> ReLU -> FC ->
  sigmoid, reduction 16); the gated streams are summed (section 3.2, Eq. 3).
- **Residual bottleneck**: 1x1 conv down to a quarter of the channels, the gated
  streams, a linear 1x1 conv back up, plus the (projected) input, then ReLU.
- **Network** (Table 1): conv 7x7/2 + max pool 3x3/2, three stages of two blocks
  each, the first two followed by a transition (1x1 conv + 2x2 average pool /2),
  a 1x1 conv ``conv5``, global average pooling and the fc-512 embedding (Linear,
  BN, ReLU) that the published models are trained and tested with.

Parameter names follow torchreid's ``osnet.py`` (``conv2.0.conv2b.1.conv1.weight``,
``fc.0.weight`` ...), so a torchreid checkpoint maps tensor for tensor
(``metric_learning.models.torch_weights.torchreid_osnet_to_paddle``). The instance-norm
variants (OSNet-IBN / AIN) are not included.

``last_stride=1`` drops the average pool of the last transition (``conv3``'s): the
final map is then twice as large in each direction, as for the other backbones.
The published models use ``last_stride=2``.
"""
import functools
import operator

import paddle.nn as nn
import paddle.nn.functional as F

# name -> channels of conv1 / stage 2 / stage 3 / stage 4 (= conv5), torchreid's widths
OSNET_WIDTHS = {
    "OSNet_x1_0": (64, 256, 384, 512),
    "OSNet_x0_75": (48, 192, 288, 384),
    "OSNet_x0_5": (32, 128, 192, 256),
    "OSNet_x0_25": (16, 64, 96, 128),
}
BLOCKS_PER_STAGE = 2
FEATURE_DIM = 512


class ConvBN(nn.Layer):
    """Conv (no bias) + BN, with ReLU unless ``relu=False`` (torchreid ConvLayer / Conv1x1 / Conv1x1Linear)."""

    def __init__(self, in_channels, out_channels, kernel_size=1, stride=1, padding=0, relu=True):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                              bias_attr=False)
        self.bn = nn.BatchNorm2D(out_channels)
        self.relu = relu

    def forward(self, x):
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class LiteConv3x3(nn.Layer):
    """Linear 1x1 conv, depthwise 3x3 conv, BN, ReLU."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = nn.Conv2D(in_channels, out_channels, 1, bias_attr=False)
        self.conv2 = nn.Conv2D(out_channels, out_channels, 3, padding=1, groups=out_channels, bias_attr=False)
        self.bn = nn.BatchNorm2D(out_channels)

    def forward(self, x):
        return F.relu(self.bn(self.conv2(self.conv1(x))))


class ChannelGate(nn.Layer):
    """Aggregation gate: ``x * sigmoid(fc2(relu(fc1(avgpool(x)))))``, the FCs as 1x1 convs with bias."""

    def __init__(self, channels, reduction=16):
        super().__init__()
        self.fc1 = nn.Conv2D(channels, channels // reduction, 1)
        self.fc2 = nn.Conv2D(channels // reduction, channels, 1)

    def forward(self, x):
        # a pool, not x.mean: it exports to ONNX as GlobalAveragePool, which ONNX Runtime runs in its blocked
        # (NCHWc) layout; a ReduceMean makes it convert every gate's input back to NCHW (docs/benchmarks.md)
        weights = F.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return x * weights


class OSBlock(nn.Layer):
    """Omni-scale residual bottleneck: four streams of 1-4 Lite 3x3 layers under one shared gate."""

    def __init__(self, in_channels, out_channels, bottleneck_reduction=4):
        super().__init__()
        mid = out_channels // bottleneck_reduction
        self.conv1 = ConvBN(in_channels, mid)
        self.conv2a = LiteConv3x3(mid, mid)
        self.conv2b = nn.Sequential(*[LiteConv3x3(mid, mid) for _ in range(2)])
        self.conv2c = nn.Sequential(*[LiteConv3x3(mid, mid) for _ in range(3)])
        self.conv2d = nn.Sequential(*[LiteConv3x3(mid, mid) for _ in range(4)])
        self.gate = ChannelGate(mid)
        self.conv3 = ConvBN(mid, out_channels, relu=False)
        self.downsample = ConvBN(in_channels, out_channels, relu=False) if in_channels != out_channels else None

    def forward(self, x):
        bottleneck = self.conv1(x)
        streams = (self.conv2a, self.conv2b, self.conv2c, self.conv2d)
        # chained adds, not add_n: an ONNX Add stays in ONNX Runtime's blocked layout, a Sum does not
        aggregated = functools.reduce(operator.add, [self.gate(stream(bottleneck)) for stream in streams])
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(self.conv3(aggregated) + identity)


def _stage(in_channels, out_channels, transition_pool):
    """Blocks of one stage, then (stages 2 and 3) the transition 1x1 conv + ``transition_pool``."""
    layers = [OSBlock(in_channels, out_channels)]
    layers += [OSBlock(out_channels, out_channels) for _ in range(BLOCKS_PER_STAGE - 1)]
    if transition_pool is not None:
        layers.append(nn.Sequential(ConvBN(out_channels, out_channels), transition_pool))
    return nn.Sequential(*layers)


class OSNet(nn.Layer):
    """OSNet trunk (``conv1`` ... ``conv5``) plus the fc-512 embedding ``fc``.

    ``forward`` is replaced by the backbone registry with the trunk alone (the map before
    pooling); ``ReIDNet`` applies ``fc`` after its pooling, as torchreid does after its own.
    """

    def __init__(self, channels, last_stride=2, feature_dim=FEATURE_DIM):
        super().__init__()
        self.conv1 = ConvBN(3, channels[0], 7, stride=2, padding=3)
        self.maxpool = nn.MaxPool2D(3, stride=2, padding=1)
        self.conv2 = _stage(channels[0], channels[1], nn.AvgPool2D(2, stride=2))
        last_pool = nn.AvgPool2D(2, stride=2) if last_stride == 2 else nn.Identity()
        self.conv3 = _stage(channels[1], channels[2], last_pool)
        self.conv4 = _stage(channels[2], channels[3], None)
        self.conv5 = ConvBN(channels[3], channels[3])
        self.fc = nn.Sequential(nn.Linear(channels[3], feature_dim), nn.BatchNorm1D(feature_dim), nn.ReLU())



def osnet_units(net):
    """The trunk in forward order, each block and transition a unit (for freezing by stage)."""
    return [net.conv1, net.maxpool] + [unit for stage in (net.conv2, net.conv3, net.conv4)
                                       for unit in stage] + [net.conv5]


def build_osnet(name):
    """``build(last_stride)`` for backbone ``name`` of ``OSNET_WIDTHS``."""
    def build(last_stride):
        return OSNet(OSNET_WIDTHS[name], last_stride=last_stride)
    return build
