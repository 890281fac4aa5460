"""Pair losses on P x K batches: batch-hard triplet, quadruplet (the classic's name for MSML), EML, n-pairs.

They work on any batch holding several identities with several images each (the P x K batches of
:class:`metric_learning.data.samplers.PKBatchSampler`); they find positives and negatives from the labels,
never from the position in the batch. The classic PaddlePaddle ``metric_learning`` losses (PaddlePaddle/models,
``PaddleCV/metric_learning/losses/*.py``, 2018-2019) are reproduced where the name is theirs: ``quadruplet``
(really MSML), ``eml`` and ``npairs`` follow those files' formulas; ``triplet`` is the batch-hard triplet loss
(the classic used fixed (a, p, n) triples instead).
"""
import math

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

PAIR_LOSSES = ("triplet", "quadruplet", "eml", "npairs")


# ----- input checks and pairwise geometry ---------------------------------------------------

def flat_labels(features, labels):
    """Labels as int64 [N] matching ``features`` [N, D]; a clear ValueError otherwise."""
    if features.ndim != 2:
        raise ValueError("loss expects features of shape [N, D], got %s" % (list(features.shape),))
    if labels.ndim not in (1, 2) or int(np.prod(labels.shape)) != features.shape[0]:
        raise ValueError("loss expects labels of shape [N] matching features [N, D]; got labels %s, features %s"
                         % (list(labels.shape), list(features.shape)))
    return labels.reshape([-1]).astype("int64")


def pair_masks(labels):
    """Boolean [N, N] masks: same identity excluding the diagonal (positives), other identity (negatives).

    Raises ValueError when the batch has no positive pair or a single identity: pair losses then
    have nothing to compare, which is a configuration error (--samples_each_class < 2 or a
    batch of one identity), not a training state to silently skip.
    """
    values = labels.numpy()
    if len(np.unique(values)) < 2:
        raise ValueError("pair losses need at least 2 identities per batch; got labels %s "
                         "(raise --train_batch_size or lower --samples_each_class)" % values.tolist())
    same = values[:, None] == values[None, :]
    positives = same & ~np.eye(len(values), dtype=bool)
    if not positives.any():
        raise ValueError("pair losses need at least 2 images of some identity per batch "
                         "(--samples_each_class >= 2); got labels %s" % values.tolist())
    return paddle.to_tensor(positives), paddle.to_tensor(~same)


def pairwise_squared_distances(x):
    """||x_i - x_j||^2 for all pairs, [N, N], via ||a||^2 + ||b||^2 - 2 a.b (clipped at 0 against rounding)."""
    squared_norms = (x * x).sum(axis=1, keepdim=True)
    squared = squared_norms + squared_norms.t() - 2.0 * paddle.matmul(x, x, transpose_y=True)
    return paddle.clip(squared, min=0.0)


def pairwise_distances(x, eps=1e-12):
    """Euclidean distances [N, N] as sqrt(max(d^2, eps)).

    The clamp matters for gradients, not values: d sqrt(u)/du = 1 / (2 sqrt(u)) is infinite at
    u = 0 (every diagonal entry, and any two coinciding features), and 0 * inf = NaN poisons the
    backward pass even for entries a mask later discards.
    """
    return paddle.sqrt(paddle.clip(pairwise_squared_distances(x), min=eps))


def masked_fill(values, mask, fill):
    return paddle.where(mask, values, paddle.full_like(values, fill))


def mean_over_anchors_with_positives(per_anchor, positives):
    has_positive = positives.any(axis=1)
    return paddle.masked_select(per_anchor, has_positive).mean()


class TripletLoss(nn.Layer):
    """Batch-hard triplet loss (Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss", arXiv 1703.07737).

    For every anchor a with at least one positive, on Euclidean distances D:
        d+_a = max_{p: y_p = y_a, p != a} D(a, p)      (hardest positive)
        d-_a = min_{n: y_n != y_a} D(a, n)             (hardest negative)
        l_a = max(0, d+_a - d-_a + margin)   or, with ``soft_margin``, softplus(d+_a - d-_a)
    loss = mean_a l_a. Distances use the clamped sqrt of :func:`pairwise_distances`.
    Classic flag: --margin.
    """

    def __init__(self, margin=0.1, soft_margin=False):
        super().__init__()
        self.margin = float(margin)
        self.soft_margin = bool(soft_margin)

    def forward(self, features, labels):
        labels = flat_labels(features, labels)
        positives, negatives = pair_masks(labels)
        distances = pairwise_distances(features)
        hardest_positive = masked_fill(distances, positives, 0.0).max(axis=1)
        hardest_negative = masked_fill(distances, negatives, float("inf")).min(axis=1)
        gap = hardest_positive - hardest_negative
        per_anchor = F.softplus(gap) if self.soft_margin else F.relu(gap + self.margin)
        return {"loss": mean_over_anchors_with_positives(per_anchor, positives)}


class QuadrupletLoss(nn.Layer):
    """The classic ``quadruplet`` loss, which is Margin Sample Mining Loss (MSML).

    MSML: Xiao et al. 2017, "Margin Sample Mining Loss: A Deep Learning Based Method for
    Person Re-identification", arXiv 1710.00478 -- despite the name, not the quadruplet loss of
    Chen et al. 2017. Reproduces PaddlePaddle/models PaddleCV/metric_learning/losses/
    quadrupletloss.py: features are L2-normalised, d is the *squared* Euclidean distance (the
    classic left the square root commented out), and the whole batch contributes ONE pair each way:
        loss = max(0, max_{y_i = y_j, i != j} d_ij - min_{y_i != y_j} d_ij + margin)
    i.e. the hardest positive pair against the hardest negative pair. Classic flag: --margin.
    """

    def __init__(self, margin=0.1):
        super().__init__()
        self.margin = float(margin)

    def forward(self, features, labels):
        labels = flat_labels(features, labels)
        positives, negatives = pair_masks(labels)
        distances = pairwise_squared_distances(F.normalize(features, axis=1))
        # row-wise first: Paddle's CPU backward of a full-tensor max/min measured ~20x slower
        hardest_positive_pair = masked_fill(distances, positives, 0.0).max(axis=1).max()
        hardest_negative_pair = masked_fill(distances, negatives, float("inf")).min(axis=1).min()
        return {"loss": F.relu(hardest_positive_pair - hardest_negative_pair + self.margin)}


class EmlLoss(nn.Layer):
    """Ensemble Metric Learning surrogate loss, the classic ``eml`` ("Large Scale Strongly Supervised
    Ensemble Metric Learning, with Applications to Face Verification and Retrieval", arXiv 1212.6094).

    Reproduces PaddlePaddle/models PaddleCV/metric_learning/losses/emlloss.py. On squared
    Euclidean distances d of the raw (un-normalised) features, for each anchor i with positives
    P_i (same identity, i excluded) and negatives N_i:
        theta_i = mean_{p in P_i} exp(d_ip - max_P d) * mean_{n in N_i} exp(-(d_in - min_N d))
        bias_i  = max_{p in P_i} d_ip - min_{n in N_i} d_in
        l_i     = log(1 + beta * theta_i * exp(bias_i)) / log(1 + beta),   beta = 1e5
    which simplifies to  l_i = log(1 + beta * mean_p exp(d_ip) * mean_n exp(-d_in)) / log(1 + beta):
    a smooth, bounded-below surrogate of "positives closer than negatives"; loss = mean_i l_i.
    The classic evaluated log(1 + x) exactly only for bias <= 20 and as log(x) beyond (its
    ``surrogate_function_stable``); here log(1 + e^z) is computed as softplus(z) with
    z = log beta + logmeanexp_P(d) + logmeanexp_N(-d), exact and overflow-free everywhere. The two
    differ by log(1 + 1/(beta theta e^20)) / log(1 + beta) <= 1e-9 for any batch of up to 1000
    images (theta >= 1/((K-1)(N-K))); the tests compare against a transcription of the classic.
    """

    def __init__(self, beta=1e5):
        super().__init__()
        if beta <= 0:
            raise ValueError("EML beta must be > 0, got %r" % beta)
        self.beta = float(beta)

    def forward(self, features, labels):
        labels = flat_labels(features, labels)
        positives, negatives = pair_masks(labels)
        distances = pairwise_squared_distances(features)
        # An anchor without positives is left out of the mean; give its row the (finite) self
        # distance so no NaN enters the graph, where it would poison the backward pass.
        lonely = paddle.logical_and(paddle.eye(len(distances)) > 0, ~positives.any(axis=1, keepdim=True))
        z = (math.log(self.beta)
             + _log_mean_exp(distances, paddle.logical_or(positives, lonely))
             + _log_mean_exp(-distances, negatives))
        per_anchor = F.softplus(z, threshold=20.0) / math.log1p(self.beta)
        return {"loss": mean_over_anchors_with_positives(per_anchor, positives)}


def _log_mean_exp(values, mask):
    """Row-wise log(mean_{j: mask_ij} exp(values_ij)); every row's mask must be non-empty (NaN otherwise)."""
    counts = mask.astype(values.dtype).sum(axis=1)
    return paddle.logsumexp(masked_fill(values, mask, float("-inf")), axis=1) - paddle.log(counts)


class NpairsLoss(nn.Layer):
    """Multi-class N-pair loss (Sohn 2016, "Improved Deep Metric Learning with Multi-class N-pair
    Loss Objective", NeurIPS), generalised from K = 2 to K images per identity.

    Follows PaddlePaddle/models PaddleCV/metric_learning/losses/npairsloss.py: the first image of
    each identity in the batch is its anchor a; every other image is a candidate c. Similarities
    are dot products s_ac = x_a . x_c of the raw features, and the target row is the same-identity
    indicator normalised to sum 1 (the classic divided its label matrix by K - 1):
        xent = mean_a( -sum_c t_ac log softmax_c(s_a.) ),  t_ac = [y_c = y_a] / #{c: y_c = y_a}
        loss = xent + 0.5 * reg_lambda * mean_i ||x_i||^2   (mean over all N images)
    With K = 2 this is exactly the classic (one positive per anchor row). The classic asserted
    K = 2 although its code already had the K > 2 anchor/candidate split; here any K >= 2 works,
    and the anchor is chosen by label, not by position. Identities with a single image in the
    batch supply no anchor, only a negative candidate. Classic flag: --npairs_reg_lambda (0.01).
    """

    def __init__(self, reg_lambda=0.01):
        super().__init__()
        if reg_lambda < 0:
            raise ValueError("--npairs_reg_lambda must be >= 0, got %r" % reg_lambda)
        self.reg_lambda = float(reg_lambda)

    def forward(self, features, labels):
        labels = flat_labels(features, labels)
        pair_masks(labels)  # validates: >= 2 identities and some identity with >= 2 images
        anchors, candidates, targets = _npairs_layout(labels.numpy())
        anchor_features = paddle.gather(features, paddle.to_tensor(anchors))
        candidate_features = paddle.gather(features, paddle.to_tensor(candidates))
        similarities = paddle.matmul(anchor_features, candidate_features, transpose_y=True)
        targets = paddle.to_tensor(targets, dtype=features.dtype)
        xent = -(targets * F.log_softmax(similarities, axis=1)).sum(axis=1).mean()
        regulariser = 0.5 * self.reg_lambda * (features * features).sum(axis=1).mean()
        return {"loss": xent + regulariser}


def _npairs_layout(labels):
    """Anchor indices (first image of each identity having >= 2 images), candidate indices (all
    other images) and the row-normalised same-identity target matrix [anchors, candidates]."""
    _, first, counts = np.unique(labels, return_index=True, return_counts=True)
    anchors = np.sort(first[counts >= 2])
    candidates = np.setdiff1d(np.arange(len(labels)), anchors)
    same = (labels[anchors][:, None] == labels[candidates][None, :]).astype("float64")
    return anchors.astype("int64"), candidates.astype("int64"), same / same.sum(axis=1, keepdims=True)
