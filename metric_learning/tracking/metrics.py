"""Multi-object tracking scores, computed by py-motmetrics (``motmetrics``), the one implementation here.

Scores compare, frame by frame, ground-truth boxes with ids against predicted boxes with track ids; a
ground-truth box and a predicted box can *match* in a frame when their IoU is at least ``iou_threshold``
(0.5, the MOTChallenge value, inclusive). Boxes are ``(left, top, width, height)``.

- **CLEAR-MOT** (Bernardin and Stiefelhagen 2008): in each frame a ground-truth id first keeps the track it
  was last matched to, if that pair still matches; the remaining boxes are paired by the Hungarian algorithm
  on IoU. Unmatched ground truth are misses (FN), unmatched predictions false positives (FP), and a ground-truth
  id matched to a track other than its previous match (however many frames ago) is an ID switch.
  ``MOTA = 1 - (FN + FP + ID switches) / ground-truth boxes`` (negative when the errors outnumber the boxes);
  ``MOTP`` here is the mean IoU of the matched pairs, MOTChallenge's convention (motmetrics' own ``motp`` is the
  mean distance, 1 - IoU).
- **Identity measures** (Ristani et al. 2016): every ground-truth id is paired with at most one track id, once
  for the whole video, choosing the one-to-one pairing that maximises the matched boxes (IDTP);
  ``IDF1 = 2 IDTP / (ground-truth boxes + predicted boxes)``, ``IDP = IDTP / predicted``, ``IDR = IDTP / ground truth``.

Ignored regions (MOT17's distractor classes: people on vehicles, static people, reflections, ...): a predicted
box matched to one, by the Hungarian algorithm on IoU against pedestrians and ignored boxes together, is dropped
before scoring, as the MOTChallenge evaluation does, so tracking such a person is neither credited nor an FP.
"""
import collections

import motmetrics as mm
import numpy as np
from scipy.optimize import linear_sum_assignment

IOU_THRESHOLD = 0.5

#: TrackingScores field -> motmetrics metric name
MOTMETRICS_NAMES = collections.OrderedDict([
    ("mota", "mota"), ("motp", "motp"), ("idf1", "idf1"), ("idp", "idp"), ("idr", "idr"), ("idtp", "idtp"),
    ("num_gt", "num_objects"), ("num_pred", "num_predictions"), ("id_switches", "num_switches"),
    ("false_positives", "num_false_positives"), ("misses", "num_misses"), ("precision", "precision"),
    ("recall", "recall"), ("num_frames", "num_frames")])
COUNTS = ("idtp", "num_gt", "num_pred", "id_switches", "false_positives", "misses", "num_frames")

TrackingScores = collections.namedtuple("TrackingScores", list(MOTMETRICS_NAMES))
TrackingScores.__doc__ = ("MOTA, MOTP (mean IoU of matches), IDF1, IDP, IDR, precision, recall (fractions) and the "
                          "counts: IDTP, ground-truth and predicted boxes, ID switches, FP, FN (misses), frames.")

#: the row name of the all-sequences scores in :func:`score_sequences`
OVERALL = "OVERALL"


def iou_matrix(boxes_a, boxes_b):
    """``[len(a), len(b)]`` IoU of two sets of ``ltwh`` boxes (0 where they do not overlap), motmetrics' boxiou."""
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    return mm.distances.boxiou(a[:, None], b[None, :]).reshape(len(a), len(b))


def _frame_objects(frame, index, what):
    """``(ids int64 [n], boxes float64 [n, 4])`` of one frame's ``(ids, boxes)``; errors name the frame."""
    ids, boxes = frame
    ids = np.asarray(ids).reshape(-1).astype(np.int64)
    boxes = np.asarray(boxes, np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) != len(ids):
        raise ValueError("%s frame %d: expected %d boxes of 4 numbers (ltwh) for %d ids, got shape %s"
                         % (what, index, len(ids), len(ids), list(boxes.shape)))
    if len(np.unique(ids)) != len(ids):
        raise ValueError("%s frame %d lists the same id twice: %s" % (what, index, ids.tolist()))
    return ids, boxes


def on_ignored(gt_boxes, ignored_boxes, pred_boxes, iou_threshold=IOU_THRESHOLD):
    """bool [len(pred_boxes)]: True for a prediction the Hungarian algorithm on IoU (pairs below
    ``iou_threshold`` not allowed) pairs with an ignored box rather than with a ground-truth box."""
    ignored_boxes = np.asarray(ignored_boxes, np.float64).reshape(-1, 4)
    flags = np.zeros(len(pred_boxes), bool)
    if not len(ignored_boxes) or not len(pred_boxes):
        return flags
    iou = iou_matrix(np.concatenate([np.asarray(gt_boxes, np.float64).reshape(-1, 4), ignored_boxes]), pred_boxes)
    iou[iou < iou_threshold] = 0.0
    rows, cols = linear_sum_assignment(iou, maximize=True)
    paired = iou[rows, cols] > 0
    flags[cols[paired & (rows >= len(gt_boxes))]] = True
    return flags


def accumulate(ground_truth, predictions, iou_threshold=IOU_THRESHOLD, ignored=None):
    """A ``motmetrics.MOTAccumulator`` of ``predictions`` against ``ground_truth``.

    Both are sequences with one ``(ids, boxes)`` pair per frame (ids ``[n]`` ints, boxes ``[n, 4]`` ltwh),
    the same number of frames each. ``ignored``: None or one ``[k, 4]`` array of ignored boxes per frame.
    """
    if len(ground_truth) != len(predictions):
        raise ValueError("ground truth has %d frames but the predictions have %d"
                         % (len(ground_truth), len(predictions)))
    if ignored is not None and len(ignored) != len(ground_truth):
        raise ValueError("ground truth has %d frames but the ignored boxes have %d" % (len(ground_truth), len(ignored)))
    accumulator = mm.MOTAccumulator(auto_id=True)
    for t, (gt_frame, pred_frame) in enumerate(zip(ground_truth, predictions)):
        gt_ids, gt_boxes = _frame_objects(gt_frame, t, "ground truth")
        pred_ids, pred_boxes = _frame_objects(pred_frame, t, "predictions")
        if ignored is not None:
            kept = ~on_ignored(gt_boxes, ignored[t], pred_boxes, iou_threshold)
            pred_ids, pred_boxes = pred_ids[kept], pred_boxes[kept]
        distances = 1.0 - iou_matrix(gt_boxes, pred_boxes)
        distances[distances > 1.0 - iou_threshold] = np.nan    # motmetrics' "may not pair"
        accumulator.update(gt_ids, pred_ids, distances)
    return accumulator


def _scores(row):
    values = {field: row[name] for field, name in MOTMETRICS_NAMES.items()}
    values["motp"] = 1.0 - values["motp"]     # mean distance (1 - IoU) -> mean IoU
    return TrackingScores(**{field: int(value) if field in COUNTS else float(value) for field, value in values.items()})


def score_tracking(ground_truth, predictions, iou_threshold=IOU_THRESHOLD, ignored=None):
    """:class:`TrackingScores` of ``predictions`` against ``ground_truth`` (arguments of :func:`accumulate`)."""
    accumulator = accumulate(ground_truth, predictions, iou_threshold, ignored)
    return _scores(mm.metrics.create().compute(accumulator, metrics=list(MOTMETRICS_NAMES.values())).iloc[0])


def score_sequences(named_accumulators):
    """``{name: TrackingScores}`` for ``[(name, accumulator)]`` plus :data:`OVERALL`: motmetrics' scores of all
    the sequences' frames together (boxes and errors summed, not per-sequence scores averaged)."""
    names = [name for name, _ in named_accumulators]
    if OVERALL in names:
        raise ValueError("%r is the name of the all-sequences row; name the sequences otherwise" % OVERALL)
    table = mm.metrics.create().compute_many([acc for _, acc in named_accumulators], names=names,
                                             metrics=list(MOTMETRICS_NAMES.values()), generate_overall=True)
    return collections.OrderedDict((name, _scores(table.loc[name])) for name in names + [OVERALL])
