"""Distillation: the student learns to rank each batch as a teacher does (``--teacher_model``)."""
import paddle
import paddle.nn.functional as F
from paddle import nn


class SimilarityDistillationLoss(nn.Layer):
    """Relational knowledge distillation: the student ranks each batch the way the teacher does.

    Called as ``loss(student_features [N, D_s], teacher_features [N, D_t])``; the widths may differ,
    because only cosine similarities within the batch are compared. For each anchor ``i`` the teacher's
    similarities to the other images become a distribution ``P_i(j) = softmax_{j != i}(cos_t(i, j) / T)``,
    the student's likewise ``Q_i``, and ``loss = mean_i KL(P_i || Q_i)``. A ReID embedding is used by
    ranking, so what a student should copy is the teacher's ranking of neighbours, which is what these
    distributions hold; the temperature ``T`` sets how much weight the nearest neighbours get.
    Unlike labels, the teacher's rankings also say which other identities look alike; the intended use
    is to pass what an ImageNet-initialised model knows to a faster backbone that has no pretrained weights.
    """

    def __init__(self, temperature=0.1):
        super().__init__()
        if not temperature > 0:
            raise ValueError("the distillation temperature (--distill_temperature) must be > 0, got %r" % temperature)
        self.temperature = float(temperature)

    def _log_neighbour_distribution(self, features):
        features = F.normalize(features, axis=1)
        logits = paddle.matmul(features, features, transpose_y=True) / self.temperature
        # an image is not its own neighbour: a logit lowered by 1e9 gets probability exactly 0 in float32,
        # and, unlike -inf, leaves every term of the KL sum finite
        logits = logits - 1e9 * paddle.eye(features.shape[0], dtype=features.dtype)
        return F.log_softmax(logits, axis=1)

    def forward(self, student_features, teacher_features):
        if student_features.shape[0] != teacher_features.shape[0] or student_features.shape[0] < 3:
            raise ValueError("distillation needs the same batch of N >= 3 images from student and teacher, got "
                             "%d and %d" % (student_features.shape[0], teacher_features.shape[0]))
        student_log = self._log_neighbour_distribution(student_features)
        teacher_log = self._log_neighbour_distribution(teacher_features.detach())
        return {"loss": (teacher_log.exp() * (teacher_log - student_log)).sum(axis=1).mean()}


def build_distillation(teacher_model, temperature):
    """The distillation loss when a ``--teacher_model`` is given, else None."""
    return SimilarityDistillationLoss(temperature) if teacher_model else None
