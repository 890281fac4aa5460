"""ReIDNet: backbone -> global pooling (average or GeM) -> optional FC -> BNNeck.

The head follows the BNNeck of Luo et al., "Bag of Tricks and A Strong Baseline for
Deep Person Re-identification" (CVPRW 2019) / fast-reid's EmbeddingHead:

    f   = FC(pool(backbone(x)))        feat_before_bn: metric losses (triplet...)
    f_b = BN(f), BN bias frozen at 0   feat_after_bn: classifier losses and retrieval

A backbone trained with its own post-pool embedding (OSNet's fc-512: Linear, BN,
ReLU, as ``backbone.fc``) has it applied right after the pooling, before the
optional FC. ``bnneck=False`` drops the BNNeck (f_b = f): the head of a network
trained without one, e.g. torchreid's OSNet, whose classifier and retrieval both
read the fc-512 output.

The BN bias is frozen because a bias shifts every embedding alike; with a
classifier on top it only moves the decision boundaries off the origin, which hurts
the angular (cosine) geometry the retrieval uses. There is no dropout in the head:
the retrieval feature must be deterministic, and the ReID baselines train without it.
Classifier weights live in the classification losses, not here. The part-based heads (PCB, MGN) are
:mod:`metric_learning.models.heads`; :func:`build_model` builds either.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from metric_learning.models.backbones import build_backbone
from metric_learning.models.heads import DEFAULT_NUM_PARTS, MGNNet, PCBNet, head_flag_error


class GlobalAvgPooling(nn.Layer):
    """``[N, C, H, W] -> [N, C]``: mean over all positions."""

    def forward(self, x):
        # a pool rather than x.mean: exported to ONNX it is a GlobalAveragePool (see models/osnet.py's gate)
        return F.adaptive_avg_pool2d(x, 1).squeeze(axis=[2, 3])


class GeneralizedMeanPooling(nn.Layer):
    """GeM pooling with a learnable exponent ``p`` (one per layer).

    ``f_c = (1/|X_c| * sum_{x in X_c} max(x, eps)^p)^(1/p)``: p = 1 is average pooling,
    p -> inf approaches max pooling. Radenovic, Tolias, Chum, "Fine-tuning CNN Image
    Retrieval with No Human Annotation", TPAMI 2018. The clip at ``eps`` keeps the
    fractional power defined; note that it also clips the negative values of
    backbones ending in hardswish (MobileNetV3, PPLCNet), where GeM(p=1) != average.
    """

    def __init__(self, p=3.0, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.p = self.create_parameter([1], default_initializer=nn.initializer.Constant(p))

    def forward(self, x):
        powered = paddle.pow(x.clip(min=self.eps), self.p)
        return paddle.pow(powered.mean(axis=[2, 3]), 1.0 / self.p)


POOLINGS = ("avg", "gem")


def build_pooling(pooling, gem_p=3.0):
    if pooling == "avg":
        return GlobalAvgPooling()
    if pooling == "gem":
        return GeneralizedMeanPooling(p=gem_p)
    raise ValueError("unknown pooling %r; choose one of: %s" % (pooling, ", ".join(POOLINGS)))


class ReIDNet(nn.Layer):
    """Person re-identification embedding network.

    Args:
        backbone_name: a name of ``metric_learning.models.backbones.BACKBONES``.
        embedding_size: width of an FC after the pooling; 0 or None: no FC, the embedding
            is the pooled backbone feature (``backbone.out_channels`` wide).
        pooling: "avg" or "gem" (learnable p, initialised to ``gem_p``).
        last_stride: stride of the backbone's last down-sampling stage, 1 or 2.
        pretrained: optional weights for the backbone alone (path for ``load_weights``).

    ``net(x)`` returns the BNNeck output ``[N, embedding_dim]`` (retrieval embedding)
    in train and eval mode; ``net.forward_features(x)`` returns
    ``(feat_before_bn, feat_after_bn)``.
    """

    def __init__(self, backbone_name, embedding_size=0, pooling="avg", last_stride=1, pretrained=None,
                 gem_p=3.0, bnneck=True):
        super().__init__()
        if embedding_size is not None and embedding_size < 0:
            raise ValueError("embedding_size must be >= 0 (0 = no FC), got %r" % (embedding_size,))
        self.backbone = build_backbone(backbone_name, last_stride=last_stride, pretrained=pretrained)
        self.pooling = build_pooling(pooling, gem_p)
        backbone_fc = getattr(self.backbone, "fc", None)
        # Paddle's Linear weight is [in, out]: the backbone's fc outputs shape[1] features.
        feature_dim = backbone_fc[0].weight.shape[1] if backbone_fc is not None else self.backbone.out_channels
        if embedding_size:
            # No bias: the BN right after it removes any constant offset anyway.
            self.embedding = nn.Linear(feature_dim, embedding_size, bias_attr=False)
            self.embedding_dim = embedding_size
        else:
            self.embedding = None
            self.embedding_dim = feature_dim
        # BN starts as weight 1, bias 0. The bias is frozen with a zero learning rate, not
        # with trainable=False: in Paddle 3.3 a BatchNorm whose bias has stop_gradient gets
        # no gradient for its weight either (tests/test_model.py checks both). It starts at
        # 0, so neither L2 nor decoupled weight decay can move it; need_clip=False keeps
        # its (unused) gradient out of global-norm clipping.
        self.bnneck = nn.BatchNorm1D(self.embedding_dim, bias_attr=paddle.ParamAttr(
            learning_rate=0.0, need_clip=False)) if bnneck else None
        self.description = "ReIDNet(%s, pooling=%s, embedding_dim=%d, last_stride=%d%s)" % (
            backbone_name, pooling, self.embedding_dim, last_stride, "" if bnneck else ", no BNNeck")

    def forward_features(self, x):
        feat = self.pooling(self.backbone(x))
        if getattr(self.backbone, "fc", None) is not None:
            feat = self.backbone.fc(feat)
        if self.embedding is not None:
            feat = self.embedding(feat)
        return feat, feat if self.bnneck is None else self.bnneck(feat)

    def forward(self, x):
        return self.forward_features(x)[1]


MODEL_ARGS = ("model", "embedding_size", "pooling", "last_stride", "pretrained_model", "gem_p", "bnneck", "head",
              "num_parts")


def build_model(model="ResNet50_vd", embedding_size=0, pooling="avg", last_stride=1, pretrained_model=None,
                gem_p=3.0, bnneck=True, head="global", num_parts=DEFAULT_NUM_PARTS):
    """The network from keyword arguments named like the command-line flags (``--model --embedding_size
    --pooling --last_stride --pretrained_model --gem_p --bnneck --head --num_parts``): a ``ReIDNet`` for
    ``head="global"``, else the part head of :mod:`metric_learning.models.heads`."""
    error = head_flag_error(head, num_parts, embedding_size, pooling, last_stride, bnneck)
    if error:
        raise ValueError(error)
    if head == "pcb":
        return PCBNet(model, num_parts=num_parts, pretrained=pretrained_model)
    if head == "mgn":
        return MGNNet(model, pretrained=pretrained_model)
    return ReIDNet(model, embedding_size=embedding_size, pooling=pooling, last_stride=last_stride,
                   pretrained=pretrained_model, gem_p=gem_p, bnneck=bnneck)


def build_model_from_args(args):
    """``build_model`` from an argparse namespace; flags it lacks keep their defaults."""
    return build_model(**{name: getattr(args, name) for name in MODEL_ARGS if hasattr(args, name)})
