"""Losses against values worked out by hand or by slow, obviously-correct references."""
import math

import numpy as np
import paddle
import pytest

from metric_learning.losses import classification, combined, distillation, pair


def tensor(values, grad=False):
    t = paddle.to_tensor(np.asarray(values, dtype="float32"))
    t.stop_gradient = not grad
    return t


def labels_of(values):
    return paddle.to_tensor(np.asarray(values, dtype="int64"))


def set_weight(layer, rows):
    layer.weight.set_value(np.asarray(rows, dtype="float32"))


def softplus(x):
    return math.log1p(math.exp(x))


def cross_entropy(logits, target):
    return -logits[target] + math.log(sum(math.exp(v) for v in logits))


def assert_finite_gradient(loss_layer, features, labels):
    x = tensor(features, grad=True)
    loss = loss_layer(x, labels_of(labels))["loss"]
    loss.backward()
    assert np.isfinite(float(loss))
    assert np.isfinite(x.grad.numpy()).all(), x.grad.numpy()


# ----- softmax / label smoothing ------------------------------------------------------------

def test_softmax_cross_entropy_with_label_smoothing_by_hand():
    # weight rows w0=(1,0), w1=(0,1), w2=(1,1); x=(1,0) -> logits (1, 0, 1); log-normaliser Z = log(2e + 1).
    layer = classification.SoftmaxLoss(embedding_dim=2, num_classes=3, label_smoothing=0.1)
    set_weight(layer, [[1, 0], [0, 1], [1, 1]])
    out = layer(tensor([[1, 0]]), labels_of([0]))
    z = math.log(2 * math.e + 1)
    q = [0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3]
    expected = -(q[0] * (1 - z) + q[1] * (0 - z) + q[2] * (1 - z))  # = z - 0.9666...
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-6)
    assert float(out["loss"]) == pytest.approx(0.895328, abs=1e-5)  # log(6.436564) - 0.966667
    np.testing.assert_allclose(out["logits"].numpy(), [[1, 0, 1]])


def test_softmax_without_smoothing_is_plain_cross_entropy():
    layer = classification.SoftmaxLoss(embedding_dim=2, num_classes=3)
    set_weight(layer, [[1, 0], [0, 1], [1, 1]])
    out = layer(tensor([[1, 0], [0, 2]]), labels_of([0, 2]))
    expected = (cross_entropy([1, 0, 1], 0) + cross_entropy([0, 2, 2], 2)) / 2
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-6)


def test_classifier_rejects_labels_outside_class_dim():
    layer = classification.SoftmaxLoss(embedding_dim=2, num_classes=3)
    with pytest.raises(ValueError, match="class_dim"):
        layer(tensor([[1, 0]]), labels_of([3]))
    with pytest.raises(ValueError, match="shape"):
        layer(tensor([[1, 0], [0, 1]]), labels_of([0, 1, 2]))
    with pytest.raises(ValueError, match="label smoothing"):
        classification.SoftmaxLoss(embedding_dim=2, num_classes=3, label_smoothing=1.0)


# ----- ArcMargin ----------------------------------------------------------------------------

def test_arcmargin_by_hand_margin_applies_to_target_angle():
    # Class weights along the axes (unnormalised on purpose); x at 60 degrees, length 5, class 0.
    # cos_0 = cos 60 = 0.5 -> target logit s*cos(60deg + m); cos_1 = sin 60 stays.
    s, m = 2.0, 0.5
    layer = classification.ArcMarginLoss(embedding_dim=2, num_classes=2, scale=s, margin=m)
    set_weight(layer, [[2, 0], [0, 3]])
    x = [[5 * math.cos(math.pi / 3), 5 * math.sin(math.pi / 3)]]
    out = layer(tensor(x), labels_of([0]))
    expected = cross_entropy([s * math.cos(math.pi / 3 + m), s * math.sin(math.pi / 3)], 0)
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-5)
    # logged logits carry no margin: s * cos
    np.testing.assert_allclose(out["logits"].numpy(), [[s * 0.5, s * math.sin(math.pi / 3)]], rtol=1e-5)


def test_arcmargin_fallback_beyond_pi_minus_m_and_easy_margin():
    # x at 170 degrees from its class weight: theta > pi - m, so cos(theta + m) would wrap around;
    # the classic replaces it by cos - m sin(pi - m). easy_margin leaves negative cosines alone.
    s, m = 3.0, 0.5
    angle = math.radians(170)
    x = tensor([[math.cos(angle), math.sin(angle)]])
    hard = classification.ArcMarginLoss(embedding_dim=2, num_classes=2, scale=s, margin=m)
    easy = classification.ArcMarginLoss(embedding_dim=2, num_classes=2, scale=s, margin=m, easy_margin=True)
    for layer in (hard, easy):
        set_weight(layer, [[1, 0], [0, 1]])
    cos0, cos1 = math.cos(angle), math.sin(angle)
    assert cos0 < math.cos(math.pi - m)
    expected_hard = cross_entropy([s * (cos0 - math.sin(math.pi - m) * m), s * cos1], 0)
    expected_easy = cross_entropy([s * cos0, s * cos1], 0)
    assert float(hard(x, labels_of([0]))["loss"]) == pytest.approx(expected_hard, rel=1e-5)
    assert float(easy(x, labels_of([0]))["loss"]) == pytest.approx(expected_easy, rel=1e-5)


def test_arcmargin_gradients_finite_when_feature_equals_its_class_weight():
    # cos = 1 exactly: an unclamped sqrt(1 - cos^2) has an infinite derivative there (NaN gradients).
    layer = classification.ArcMarginLoss(embedding_dim=2, num_classes=2, scale=80.0, margin=0.15)
    set_weight(layer, [[1, 0], [0, 1]])
    x = tensor([[1, 0], [0, 2]], grad=True)
    out = layer(x, labels_of([0, 1]))
    out["loss"].backward()
    assert np.isfinite(float(out["loss"]))
    assert np.isfinite(x.grad.numpy()).all()
    assert np.isfinite(layer.weight.grad.numpy()).all()


# ----- batch-hard triplet -------------------------------------------------------------------

# Class 0: (0,0), (0,3); class 1: (4,0), (8,0). Distances: d01=3, d23=4, d02=4, d03=8, d12=5, d13=sqrt(73).
# Hardest positive / negative per anchor: 0: 3 / 4, 1: 3 / 5, 2: 4 / 4, 3: 4 / 8 -> gaps -1, -2, 0, -4.
PAPER_FEATURES = [[0, 0], [0, 3], [4, 0], [8, 0]]
PAPER_LABELS = [0, 0, 1, 1]


def test_batch_hard_triplet_by_hand():
    out = pair.TripletLoss(margin=1.5)(tensor(PAPER_FEATURES), labels_of(PAPER_LABELS))
    assert float(out["loss"]) == pytest.approx((0.5 + 0 + 1.5 + 0) / 4, rel=1e-6)


def test_soft_margin_triplet_by_hand():
    out = pair.TripletLoss(soft_margin=True)(tensor(PAPER_FEATURES), labels_of(PAPER_LABELS))
    expected = sum(softplus(g) for g in (-1, -2, 0, -4)) / 4
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-5)


def slow_batch_hard_triplet(x, y, margin):
    per_anchor = []
    for a in range(len(x)):
        pos = [np.linalg.norm(x[a] - x[p]) for p in range(len(x)) if y[p] == y[a] and p != a]
        neg = [np.linalg.norm(x[a] - x[n]) for n in range(len(x)) if y[n] != y[a]]
        if pos:
            per_anchor.append(max(0.0, max(pos) - min(neg) + margin))
    return np.mean(per_anchor)


def test_triplet_matches_loop_reference_on_a_shuffled_batch():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(12, 5)).astype("float32")
    y = rng.permutation(np.repeat([4, 9, 2], 4))  # P=3 identities x K=4, interleaved
    out = pair.TripletLoss(margin=0.3)(tensor(x), labels_of(y))
    assert float(out["loss"]) == pytest.approx(slow_batch_hard_triplet(x, y, 0.3), rel=1e-5)


# ----- quadruplet (MSML) ------------------------------------------------------------------

def unit(degrees, length=1.0):
    return [length * math.cos(math.radians(degrees)), length * math.sin(math.radians(degrees))]


def test_quadruplet_is_msml_one_hardest_pair_each_way_by_hand():
    # After L2 normalisation, squared distance between unit vectors = 2 - 2 cos(angle).
    # Class 0 at 0 and 90 deg, class 1 at 180 and 45 deg (lengths vary: normalisation removes them).
    # Positive pairs: 90 deg -> 2, 135 deg -> 2 + sqrt2 (hardest). Negative pairs: 180 -> 4,
    # 45 -> 2 - sqrt2 (hardest, twice), 90 -> 2. loss = (2 + sqrt2) - (2 - sqrt2) + margin.
    x = [unit(0, 3), unit(90, 0.5), unit(180, 2), unit(45, 7)]
    out = pair.QuadrupletLoss(margin=0.1)(tensor(x), labels_of([0, 0, 1, 1]))
    assert float(out["loss"]) == pytest.approx(2 * math.sqrt(2) + 0.1, rel=1e-5)


def test_quadruplet_is_zero_when_hardest_pairs_respect_the_margin():
    x = [unit(0), unit(10), unit(180), unit(200)]  # hardest positive 2-2cos20 = 0.12, hardest negative 2-2cos160
    out = pair.QuadrupletLoss(margin=0.1)(tensor(x), labels_of([0, 0, 1, 1]))
    assert float(out["loss"]) == 0.0


# ----- EML --------------------------------------------------------------------------------

def classic_eml(x, samples_each_class):
    """Transcription of PaddlePaddle/models emlloss.py (contiguous P x K layout, piecewise surrogate).

    Returns the loss and the per-anchor ``bias`` (the classic switches formulas at bias = 20)."""
    beta, thresh = 100000.0, 20.0
    n, k = len(x), samples_each_class
    sq = (x ** 2).sum(1)
    d = sq[:, None] + sq[None, :] - 2 * x @ x.T
    losses, biases = [], []
    for i in range(n):
        block = range(i // k * k, i // k * k + k)
        pos = np.array([d[i, j] for j in block if j != i])
        neg = np.array([d[i, j] for j in range(n) if j not in block])
        pos_max, neg_min = pos.max(), neg.min()
        theta = np.exp(pos - pos_max).mean() * np.exp(-(neg - neg_min)).mean()
        bias = pos_max - neg_min
        biases.append(bias)

        def surrogate(b):
            return math.log(1 + beta * theta * math.exp(b)) / math.log(1 + beta)

        def approximate(b):
            return (math.log(theta) + b + math.log(beta)) / math.log(1 + beta)

        losses.append(surrogate(min(bias, thresh)) + approximate(max(bias, thresh)) - surrogate(thresh))
    return float(np.mean(losses)), biases


@pytest.mark.parametrize("scale", [0.3, 4.0])  # small distances, and bias > 20 (the classic's other branch)
def test_eml_matches_the_classic_formula(scale):
    rng = np.random.default_rng(7)
    x = (scale * rng.normal(size=(8, 3))).astype("float64")
    y = np.repeat([0, 1, 2, 3], 2)
    expected, biases = classic_eml(x, 2)
    assert (max(biases) > 20) == (scale > 1)  # each case really takes the branch it is meant to
    out = pair.EmlLoss()(tensor(x), labels_of(y))
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-5)


def test_eml_by_hand_two_by_two():
    # PAPER_FEATURES squared distances: d01=9, d23=16, d02=16, d03=64, d12=25, d13=73.
    # l_i = log(1 + beta * exp(d_pos) * mean(exp(-d_neg))) / log(1 + beta)
    beta = 1e5
    rows = [(9, (16, 64)), (9, (25, 73)), (16, (16, 25)), (16, (64, 73))]
    expected = np.mean([math.log1p(beta * math.exp(p) * np.mean(np.exp(-np.array(n)))) / math.log1p(beta)
                        for p, n in rows])
    out = pair.EmlLoss()(tensor(PAPER_FEATURES), labels_of(PAPER_LABELS))
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-5)


def test_eml_does_not_depend_on_batch_order():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 4)).astype("float32")
    y = np.repeat([0, 1, 2], 4)
    order = rng.permutation(12)
    a = float(pair.EmlLoss()(tensor(x), labels_of(y))["loss"])
    b = float(pair.EmlLoss()(tensor(x[order]), labels_of(y[order]))["loss"])
    assert a == pytest.approx(b, rel=1e-6)
    assert a == pytest.approx(classic_eml(x.astype("float64"), 4)[0], rel=1e-5)


def slow_eml(x, y, beta=1e5):
    per_anchor = []
    for a in range(len(x)):
        pos = [np.sum((x[a] - x[p]) ** 2) for p in range(len(x)) if y[p] == y[a] and p != a]
        neg = [np.sum((x[a] - x[n]) ** 2) for n in range(len(x)) if y[n] != y[a]]
        if pos:
            per_anchor.append(math.log1p(beta * np.mean(np.exp(pos)) * np.mean(np.exp(-np.array(neg))))
                              / math.log1p(beta))
    return np.mean(per_anchor)


@pytest.mark.parametrize("name, reference", [("triplet", lambda x, y: slow_batch_hard_triplet(x, y, 0.3)),
                                             ("eml", slow_eml)])
def test_identity_with_a_single_image_is_only_a_negative(name, reference):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 3)).astype("float32")
    y = np.array([0, 0, 1, 1, 2])  # identity 2 has no positive: not an anchor, still a negative
    layer = pair.TripletLoss(margin=0.3) if name == "triplet" else pair.EmlLoss()
    assert float(layer(tensor(x), labels_of(y))["loss"]) == pytest.approx(reference(x, y), rel=1e-5)
    assert_finite_gradient(layer, x, y)


# ----- N-pairs ----------------------------------------------------------------------------

def classic_npairs_k2(x, reg_lambda):
    """The classic npairsloss.py for K = 2: anchors x[0::2], positives x[1::2], identity targets."""
    anchors, positives = x[0::2], x[1::2]
    s = anchors @ positives.T
    log_softmax = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    xent = -np.mean(np.diag(log_softmax))
    return xent + 0.5 * reg_lambda * np.mean((x ** 2).sum(axis=1))


def test_npairs_equals_the_classic_for_k2():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(10, 6)).astype("float64")
    y = np.repeat([3, 1, 4, 0, 2], 2)
    out = pair.NpairsLoss(reg_lambda=0.01)(tensor(x), labels_of(y))
    assert float(out["loss"]) == pytest.approx(classic_npairs_k2(x, 0.01), rel=1e-5)


def test_npairs_k4_multi_positive_targets_by_loop():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(8, 3))
    y = np.array([7, 7, 2, 7, 2, 2, 7, 2])  # K = 4, interleaved; anchors are indices 0 (id 7) and 2 (id 2)
    candidates = [1, 3, 4, 5, 6, 7]
    total = 0.0
    for a in (0, 2):
        s = np.array([x[a] @ x[c] for c in candidates])
        log_p = s - math.log(np.exp(s).sum())
        total += -sum(log_p[j] / 3 for j, c in enumerate(candidates) if y[c] == y[a])
    expected = total / 2 + 0.5 * 0.01 * np.mean((x ** 2).sum(axis=1))
    out = pair.NpairsLoss(reg_lambda=0.01)(tensor(x), labels_of(y))
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-5)


# ----- shared pair-loss behaviour ---------------------------------------------------------

PAIR_LOSS_LAYERS = {
    "triplet": lambda: pair.TripletLoss(margin=0.3),
    "soft-triplet": lambda: pair.TripletLoss(soft_margin=True),
    "quadruplet": lambda: pair.QuadrupletLoss(margin=0.1),
    "eml": lambda: pair.EmlLoss(),
    "npairs": lambda: pair.NpairsLoss(reg_lambda=0.01),
}


@pytest.mark.parametrize("name", sorted(PAIR_LOSS_LAYERS))
def test_pair_loss_gradients_finite_when_features_coincide(name):
    layer = PAIR_LOSS_LAYERS[name]()
    # a positive pair that coincides (hardest positive at distance 0) ...
    assert_finite_gradient(layer, [[1, 2], [1, 2], [3, 0], [3, 1]], [0, 0, 1, 1])
    # ... a negative pair that coincides, and everything in one point
    assert_finite_gradient(layer, [[1, 2], [0, 5], [1, 2], [3, 1]], [0, 0, 1, 1])
    assert_finite_gradient(layer, [[1, 1]] * 4, [0, 0, 1, 1])


@pytest.mark.parametrize("name", sorted(PAIR_LOSS_LAYERS))
def test_pair_losses_reject_batches_without_pairs(name):
    layer = PAIR_LOSS_LAYERS[name]()
    with pytest.raises(ValueError, match="2 identities"):
        layer(tensor([[0, 1], [1, 0]]), labels_of([5, 5]))
    with pytest.raises(ValueError, match="samples_each_class"):
        layer(tensor([[0, 1], [1, 0], [1, 1]]), labels_of([0, 1, 2]))


def test_pair_loss_accepts_column_labels_and_other_batch_sizes():
    x = tensor(PAPER_FEATURES)
    flat = float(pair.TripletLoss(margin=1.5)(x, labels_of(PAPER_LABELS))["loss"])
    column = float(pair.TripletLoss(margin=1.5)(x, labels_of([[v] for v in PAPER_LABELS]))["loss"])
    assert flat == column
    # 3 identities x 3 images: nothing hard-coded to the batch size
    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, 2)).astype("float32")
    y = np.repeat([0, 1, 2], 3)
    assert float(pair.TripletLoss(0.2)(tensor(x), labels_of(y))["loss"]) == pytest.approx(
        slow_batch_hard_triplet(x, y, 0.2), rel=1e-5)


# ----- factory and combined criterion -----------------------------------------------------

def test_build_loss_names_and_errors():
    assert isinstance(combined.build_loss("quadruplet", margin=0.2), pair.QuadrupletLoss)
    assert combined.build_loss("arcmargin", embedding_dim=4, num_classes=3, scale=30.0).scale == 30.0
    with pytest.raises(ValueError, match="softmax, arcmargin, triplet, quadruplet, eml, npairs"):
        combined.build_loss("contrastive")
    with pytest.raises(ValueError, match="reg_lambda"):
        combined.build_loss("triplet", reg_lambda=0.1)


def test_combined_loss_sums_weighted_parts_and_reports_accuracy():
    classifier = classification.SoftmaxLoss(embedding_dim=2, num_classes=2, label_smoothing=0.1)
    set_weight(classifier, [[1, 0], [0, 1]])
    triplet = pair.TripletLoss(margin=1.5)
    criterion = combined.CombinedLoss(classifier, triplet, metric_weight=0.5)
    before_bn = tensor(PAPER_FEATURES)
    after_bn = tensor([[2, 0], [1, 3], [0, 1], [3, 1]])  # predicted classes 0, 1, 1, 0 -> labels 0,0,1,1: acc 0.5
    labels = labels_of(PAPER_LABELS)
    out = criterion(before_bn, after_bn, labels)
    softmax_part = float(classifier(after_bn, labels)["loss"])
    assert float(out["softmax_loss"]) == pytest.approx(softmax_part, rel=1e-6)
    assert float(out["triplet_loss"]) == pytest.approx(0.5, rel=1e-6)  # the by-hand value, on before_bn
    assert float(out["loss"]) == pytest.approx(softmax_part + 0.5 * 0.5, rel=1e-6)
    assert float(out["acc"]) == 0.5
    assert out["logits"].shape == [4, 2]


def test_combined_loss_pair_only_on_the_retrieval_embedding():
    criterion = combined.CombinedLoss(metric=pair.TripletLoss(margin=1.5), metric_features="after_bn")
    out = criterion(tensor(np.zeros((4, 2))), tensor(PAPER_FEATURES), labels_of(PAPER_LABELS))
    assert sorted(out) == ["loss"]
    assert float(out["loss"]) == pytest.approx(0.5, rel=1e-6)
    with pytest.raises(ValueError):
        combined.CombinedLoss()


# ----- relational distillation ---------------------------------------------------------------

# Three 2-d images. Teacher cosines: t01 = 0, t02 = 1, t12 = 0; student: s01 = 1, s02 = 0, s12 = 0.
DISTILL_TEACHER = [[1, 0], [0, 1], [1, 0]]
DISTILL_STUDENT = [[1, 0], [1, 0], [0, 1]]


def test_similarity_distillation_by_hand():
    # T = 1: each anchor's distribution over its two neighbours is (sigmoid(a - b), sigmoid(b - a)).
    # anchor 0: P = (1 - e, e), Q = (e, 1 - e) with e = sigmoid(1)   -> KL = (2e - 1) * 1
    # anchor 1: P = (1/2, 1/2),  Q = (e, 1 - e)                      -> KL = -ln(4 e (1 - e)) / 2
    # anchor 2: P = (e, 1 - e),  Q = (1/2, 1/2)                      -> KL = e ln(2e) + (1 - e) ln(2 (1 - e))
    e = 1.0 / (1.0 + math.exp(-1.0))
    by_hand = ((2 * e - 1) - math.log(4 * e * (1 - e)) / 2 + e * math.log(2 * e) + (1 - e) * math.log(2 * (1 - e))) / 3
    loss = distillation.SimilarityDistillationLoss(temperature=1.0)
    assert float(loss(tensor(DISTILL_STUDENT), tensor(DISTILL_TEACHER))["loss"]) == pytest.approx(by_hand, rel=1e-5)
    assert by_hand == pytest.approx(0.23106, abs=1e-5)
    assert float(loss(tensor(DISTILL_TEACHER), tensor(DISTILL_TEACHER))["loss"]) == pytest.approx(0.0, abs=1e-7)


def test_similarity_distillation_compares_only_cosines():
    loss = distillation.SimilarityDistillationLoss(temperature=0.1)
    reference = float(loss(tensor(DISTILL_STUDENT), tensor(DISTILL_TEACHER))["loss"])
    # a 4-d teacher with the same cosines, and a student at another scale, give the same loss
    wider_teacher = np.concatenate([DISTILL_TEACHER, DISTILL_TEACHER], axis=1) * 7.0
    assert float(loss(tensor(np.asarray(DISTILL_STUDENT) * 0.3), tensor(wider_teacher))["loss"]) == \
        pytest.approx(reference, rel=1e-5)
    with pytest.raises(ValueError, match="N >= 3"):
        loss(tensor(DISTILL_STUDENT[:2]), tensor(DISTILL_TEACHER[:2]))
    with pytest.raises(ValueError, match=r"temperature \(--distill_temperature\) must be > 0"):
        distillation.SimilarityDistillationLoss(temperature=0)


def test_similarity_distillation_moves_only_the_student():
    student, teacher = tensor(DISTILL_STUDENT, grad=True), tensor(DISTILL_TEACHER, grad=True)
    distillation.SimilarityDistillationLoss(temperature=0.1)(student, teacher)["loss"].backward()
    assert np.isfinite(student.grad.numpy()).all() and np.abs(student.grad.numpy()).max() > 0
    assert teacher.grad is None or not np.abs(teacher.grad.numpy()).any()


def test_combined_loss_adds_weighted_distillation_on_the_retrieval_embedding():
    criterion = combined.CombinedLoss(metric=pair.TripletLoss(margin=1.5), distillation=distillation.SimilarityDistillationLoss(1.0),
                               distillation_weight=2.0)
    student = np.asarray(DISTILL_STUDENT + [[1, 1]], dtype="float32")
    teacher = np.asarray(DISTILL_TEACHER + [[1, 1]], dtype="float32")
    out = criterion(tensor(PAPER_FEATURES), tensor(student), labels_of(PAPER_LABELS), tensor(teacher))
    distill = float(distillation.SimilarityDistillationLoss(1.0)(tensor(student), tensor(teacher))["loss"])
    assert float(out["distill_loss"]) == pytest.approx(distill, rel=1e-6) and distill > 0.05
    assert float(out["loss"]) == pytest.approx(0.5 + 2.0 * distill, rel=1e-6)  # triplet 0.5 by hand, on before_bn
    with pytest.raises(ValueError, match="teacher embeddings are needed exactly when"):
        criterion(tensor(PAPER_FEATURES), tensor(student), labels_of(PAPER_LABELS))
    assert sorted(combined.CombinedLoss(distillation=distillation.SimilarityDistillationLoss())(
        tensor(student), tensor(student), labels_of(PAPER_LABELS), tensor(teacher))) == ["loss"]


def nearest_neighbour_shares_cluster(features, clusters):
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return float((clusters[similarity.argmax(axis=1)] == clusters).mean())


def test_distillation_alone_teaches_a_student_what_only_the_teacher_sees():
    """Six clusters live in 2 of 16 input dimensions; the other 14 are larger noise. The teacher reads the two
    informative dimensions; a linear student learns, from the teacher's batch rankings alone (no labels), to
    find the clusters in held-out points."""
    rng = np.random.default_rng(0)
    angles = np.arange(6) * np.pi / 3

    def points(n):
        clusters = rng.integers(0, 6, n)
        signal = np.stack([np.cos(angles[clusters]), np.sin(angles[clusters])], 1) + 0.1 * rng.normal(size=(n, 2))
        return np.concatenate([signal, rng.normal(size=(n, 14))], 1).astype("float32"), clusters

    (train, _), (held_out, held_out_clusters) = points(600), points(300)
    paddle.seed(0)
    student = paddle.nn.Linear(16, 4)
    optimizer = paddle.optimizer.Adam(0.01, parameters=student.parameters())
    loss = distillation.SimilarityDistillationLoss(temperature=0.1)
    embed = lambda x: student(paddle.to_tensor(x)).numpy()  # noqa: E731
    before = nearest_neighbour_shares_cluster(embed(held_out), held_out_clusters)
    assert nearest_neighbour_shares_cluster(held_out, held_out_clusters) < 0.5  # the raw input hides the clusters
    assert nearest_neighbour_shares_cluster(held_out[:, :2], held_out_clusters) == 1.0  # the teacher's view
    for _ in range(300):
        batch = train[rng.integers(0, len(train), 32)]
        value = loss(student(paddle.to_tensor(batch)), paddle.to_tensor(batch[:, :2]))["loss"]
        value.backward()
        optimizer.step()
        optimizer.clear_grad()
    assert before < 0.3
    assert nearest_neighbour_shares_cluster(embed(held_out), held_out_clusters) > 0.95
