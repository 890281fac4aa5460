"""Training losses for person re-identification.

One interface for every loss: a ``paddle.nn.Layer`` called as ``loss(features, labels)`` with
``features`` float [N, D] and ``labels`` int64 [N] (``[N, 1]`` is accepted too), returning a dict::

    {"loss": scalar Tensor}                          # pair losses
    {"loss": scalar Tensor, "logits": Tensor[N, C]}  # classification losses (for accuracy logging)

Classification losses (:mod:`metric_learning.losses.classification`) own their classifier weight;
pair losses (:mod:`metric_learning.losses.pair`) work on P x K batches; distillation
(:mod:`metric_learning.losses.distillation`) compares the student's rankings with a teacher's.
:func:`build_loss` makes any of them by name and :class:`CombinedLoss` is the criterion the trainer
calls with the network's ``(feat_before_bn, feat_after_bn, labels)``; :class:`PartsLoss` is that of a part-based head
(:mod:`metric_learning.models.heads`), called with its ``(pair_features, classifier_features, labels)`` dicts.
"""
import inspect

import paddle
from paddle import nn

from metric_learning.losses.classification import ArcMarginLoss, SoftmaxLoss
from metric_learning.losses.pair import EmlLoss, NpairsLoss, QuadrupletLoss, TripletLoss

LOSSES = {
    "softmax": SoftmaxLoss,
    "arcmargin": ArcMarginLoss,
    "triplet": TripletLoss,
    "quadruplet": QuadrupletLoss,
    "eml": EmlLoss,
    "npairs": NpairsLoss,
}


def build_loss(name, **kwargs):
    """Instantiate loss ``name`` (see ``LOSSES``) with its constructor keyword arguments.

    Classification losses need ``embedding_dim`` and ``num_classes``. An unknown name or a keyword
    the loss does not take raises ValueError listing the valid choices.
    """
    if name not in LOSSES:
        raise ValueError("unknown loss %r (--loss_name); choices: %s" % (name, ", ".join(LOSSES)))
    cls = LOSSES[name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unexpected = sorted(set(kwargs) - set(accepted))
    if unexpected:
        raise ValueError("loss %r does not take %s; it accepts: %s" % (name, ", ".join(unexpected), ", ".join(accepted)))
    return cls(**kwargs)


class CombinedLoss(nn.Layer):
    """The trainer's criterion: optional classification loss + optional weighted pair loss + optional
    weighted distillation from a teacher.

    Called with the network's ``(feat_before_bn, feat_after_bn, labels)``, plus the teacher's embeddings of
    the same batch when there is a ``distillation`` loss. Following BNNeck (Luo et al. 2019) the classifier
    sees the feature after the BN layer; the pair loss sees the feature before it
    (``metric_features="before_bn"``) or, to train the retrieval embedding directly as the classic
    train_pair did, after it (``"after_bn"``). Distillation acts on the feature after the BN layer, the
    embedding that is exported and searched.
        loss = classification_loss + metric_weight * metric_loss + distillation_weight * distillation_loss
    Returns ``{"loss", "logits", "acc"}`` when there is a classifier (acc = top-1 on the batch),
    plus ``"<name>_loss"`` for each part when both are present; all but ``logits`` are scalars.
    """

    def __init__(self, classification=None, metric=None, metric_weight=1.0, metric_features="before_bn",
                 distillation=None, distillation_weight=1.0):
        super().__init__()
        if classification is None and metric is None and distillation is None:
            raise ValueError("CombinedLoss needs a classification loss, a pair loss or a distillation loss")
        if metric_features not in ("before_bn", "after_bn"):
            raise ValueError("metric_features must be 'before_bn' or 'after_bn', got %r" % metric_features)
        if metric is not None and metric_weight <= 0:
            raise ValueError("the pair-loss weight must be > 0, got %r" % metric_weight)
        if distillation is not None and distillation_weight <= 0:
            raise ValueError("the distillation weight (--distill_weight) must be > 0, got %r" % distillation_weight)
        self.classification = classification
        self.metric = metric
        self.metric_weight = float(metric_weight)
        self.metric_features = metric_features
        self.distillation = distillation
        self.distillation_weight = float(distillation_weight)

    def forward(self, feat_before_bn, feat_after_bn, labels, teacher_features=None):
        if (self.distillation is None) != (teacher_features is None):
            raise ValueError("teacher embeddings are needed exactly when the criterion has a distillation loss "
                             "(distillation loss: %s, teacher embeddings given: %s)"
                             % (self.distillation is not None, teacher_features is not None))
        out, parts, weighted = {}, {}, []
        if self.classification is not None:
            result = self.classification(feat_after_bn, labels)
            parts[_loss_name(self.classification)] = result["loss"]
            weighted.append(result["loss"])
            out["logits"] = result["logits"]
            predicted = out["logits"].argmax(axis=1)
            out["acc"] = (predicted == labels.reshape([-1])).astype("float32").mean()
        if self.metric is not None:
            features = feat_before_bn if self.metric_features == "before_bn" else feat_after_bn
            metric_loss = self.metric(features, labels)["loss"]
            parts[_loss_name(self.metric)] = metric_loss
            weighted.append(self.metric_weight * metric_loss)
        if self.distillation is not None:
            distillation_loss = self.distillation(feat_after_bn, teacher_features)["loss"]
            parts["distill"] = distillation_loss
            weighted.append(self.distillation_weight * distillation_loss)
        out["loss"] = paddle.add_n(weighted)
        if len(parts) > 1:
            out.update({name + "_loss": value for name, value in parts.items()})
        return out


class PartsLoss(nn.Layer):
    """The criterion of a part-based head (PCB, MGN): one classification loss per classifier feature, and the
    pair loss on each pair feature (MGN's three global features, never the stripes: a stripe can be pure
    background, and its distances carry no identity).

    Called with the network's ``(pair_features, classifier_features, labels)``, two dicts ``{name: [N, D]}``
    (:meth:`metric_learning.models.heads.MGNNet.forward_features`)::

        loss = mean_f classification_f + metric_weight * mean_g metric_g

    Means, not sums: the loss and its gradients keep the scale of the global head's one classifier and one
    triplet, so ``--lr`` and ``--triplet_weight`` carry over between heads (the PCB paper sums its stripes'
    losses, which for SGD is the same as a learning rate ``num_parts`` times larger).
    Returns ``{"loss", "logits", "acc"}`` and ``"<loss>_<feature>_loss"`` for every term (``softmax_p2_part1_loss``,
    ``triplet_global_loss`` ...); ``logits`` are the sum of the classifiers' logits, the prediction of the
    ensemble of classifiers, and ``acc`` its top-1 accuracy on the batch.
    """

    def __init__(self, classifications, metric=None, metric_weight=1.0):
        super().__init__()
        if not classifications:
            raise ValueError("PartsLoss needs a classification loss for every classifier feature")
        if metric is not None and metric_weight <= 0:
            raise ValueError("the pair-loss weight must be > 0, got %r" % metric_weight)
        self.classifications = nn.LayerDict(classifications)
        self.metric = metric
        self.metric_weight = float(metric_weight)

    def forward(self, pair_features, classifier_features, labels, teacher_features=None):
        if teacher_features is not None:
            raise ValueError("distillation (--teacher_model) is implemented for --head global only")
        if list(classifier_features) != list(self.classifications):
            raise ValueError("the network's classifier features %s are not the criterion's %s"
                             % (list(classifier_features), list(self.classifications)))
        out, classification_terms, metric_terms, logits = {}, [], [], []
        for name, features in classifier_features.items():
            result = self.classifications[name](features, labels)
            out["%s_%s_loss" % (_loss_name(self.classifications[name]), name)] = result["loss"]
            classification_terms.append(result["loss"])
            logits.append(result["logits"])
        loss = paddle.add_n(classification_terms) / len(classification_terms)
        if self.metric is not None:
            if not pair_features:
                raise ValueError("the criterion has a pair loss but the network gives no pair features (PCB "
                                 "trains its stripes with classifiers only; --triplet_weight 0)")
            for name, features in pair_features.items():
                term = self.metric(features, labels)["loss"]
                out["%s_%s_loss" % (_loss_name(self.metric), name)] = term
                metric_terms.append(term)
            loss = loss + self.metric_weight * paddle.add_n(metric_terms) / len(metric_terms)
        out["loss"] = loss
        out["logits"] = paddle.add_n(logits)
        out["acc"] = (out["logits"].argmax(axis=1) == labels.reshape([-1])).astype("float32").mean()
        return out


def _loss_name(layer):
    for name, cls in LOSSES.items():
        if type(layer) is cls:
            return name
    return type(layer).__name__.lower()
