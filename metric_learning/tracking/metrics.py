"""Multi-object tracking scores: IDF1 (identity measures) and CLEAR-MOT identity switches.

Both compare, frame by frame, ground-truth boxes with ids against predicted boxes with track ids; a
ground-truth box and a predicted box *match* in a frame when their IoU is at least ``iou_threshold``
(0.5, the MOTChallenge value). Boxes are ``(left, top, width, height)``.

- **IDF1** (Ristani et al., "Performance Measures and a Data Set for Multi-Target, Multi-Camera Tracking",
  ECCV 2016 workshops): every ground-truth id is paired with at most one track id, once for the whole
  video, choosing the one-to-one pairing that maximises the number of matched boxes (IDTP). Then
  ``IDF1 = 2 IDTP / (ground-truth boxes + predicted boxes)``, ``IDP = IDTP / predicted boxes`` and
  ``IDR = IDTP / ground-truth boxes``. A track that changes person only earns credit for one of them.
- **ID switches** (Bernardin and Stiefelhagen, "Evaluating Multiple Object Tracking Performance: The CLEAR
  MOT Metrics", 2008), counted as py-motmetrics does: in each frame a ground-truth id first keeps the
  track it was last matched to, if that pair still matches; the remaining boxes are assigned by the
  Hungarian algorithm on IoU. A switch is a ground-truth id matched to a track other than its previous
  match (however many frames ago that was; frames without a match do not reset it).
"""
import collections

import numpy as np
from scipy.optimize import linear_sum_assignment

IOU_THRESHOLD = 0.5

TrackingScores = collections.namedtuple(
    "TrackingScores", ["idf1", "idp", "idr", "idtp", "num_gt", "num_pred", "id_switches"])
TrackingScores.__doc__ = ("IDF1, IDP, IDR (fractions in [0, 1]), IDTP and box counts, and CLEAR-MOT identity "
                          "switches of one video.")


def iou_matrix(boxes_a, boxes_b):
    """``[len(a), len(b)]`` IoU of two sets of ``ltwh`` boxes (0 where the union is empty)."""
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0.0, None), axis=2)
    union = np.prod(a[:, 2:], axis=1)[:, None] + np.prod(b[:, 2:], axis=1)[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


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


def _clear_mot_matches(gt_ids, pred_ids, iou, last_match, iou_threshold):
    """Row/column pairs matched in one frame: previous correspondences first, then Hungarian on IoU."""
    valid = iou >= iou_threshold
    gt_free = np.ones(len(gt_ids), bool)
    pred_free = np.ones(len(pred_ids), bool)
    pred_column = {int(p): j for j, p in enumerate(pred_ids)}
    pairs = []
    for i, g in enumerate(gt_ids.tolist()):
        j = pred_column.get(last_match.get(g))
        if j is not None and pred_free[j] and valid[i, j]:
            pairs.append((i, j))
            gt_free[i] = pred_free[j] = False
    rows, cols = np.nonzero(gt_free)[0], np.nonzero(pred_free)[0]
    if len(rows) and len(cols):
        # invalid pairs get weight 0 so the assignment never prefers them; they are dropped below
        weights = np.where(valid[np.ix_(rows, cols)], iou[np.ix_(rows, cols)], 0.0)
        chosen_rows, chosen_cols = linear_sum_assignment(weights, maximize=True)
        pairs += [(rows[r], cols[c]) for r, c in zip(chosen_rows, chosen_cols) if valid[rows[r], cols[c]]]
    return pairs


def score_tracking(ground_truth, predictions, iou_threshold=IOU_THRESHOLD):
    """:class:`TrackingScores` of ``predictions`` against ``ground_truth``.

    Both are sequences with one ``(ids, boxes)`` pair per frame (ids ``[n]`` ints, boxes ``[n, 4]`` ltwh),
    the same number of frames each.
    """
    if len(ground_truth) != len(predictions):
        raise ValueError("ground truth has %d frames but the predictions have %d"
                         % (len(ground_truth), len(predictions)))
    hit_gt, hit_pred = [], []   # ids of every (ground truth, track) pair that matches in some frame
    last_match, id_switches, num_gt, num_pred = {}, 0, 0, 0
    for t, (gt_frame, pred_frame) in enumerate(zip(ground_truth, predictions)):
        gt_ids, gt_boxes = _frame_objects(gt_frame, t, "ground truth")
        pred_ids, pred_boxes = _frame_objects(pred_frame, t, "predictions")
        num_gt += len(gt_ids)
        num_pred += len(pred_ids)
        iou = iou_matrix(gt_boxes, pred_boxes)
        rows, cols = np.nonzero(iou >= iou_threshold)
        hit_gt.append(gt_ids[rows])
        hit_pred.append(pred_ids[cols])
        for i, j in _clear_mot_matches(gt_ids, pred_ids, iou, last_match, iou_threshold):
            g, p = int(gt_ids[i]), int(pred_ids[j])
            id_switches += int(g in last_match and last_match[g] != p)
            last_match[g] = p
    idtp = _best_identity_pairing(np.concatenate(hit_gt or [[]]), np.concatenate(hit_pred or [[]]))
    return TrackingScores(
        idf1=2.0 * idtp / (num_gt + num_pred) if num_gt + num_pred else 1.0,
        idp=idtp / num_pred if num_pred else 1.0,
        idr=idtp / num_gt if num_gt else 1.0,
        idtp=idtp, num_gt=num_gt, num_pred=num_pred, id_switches=id_switches)


def _best_identity_pairing(hit_gt, hit_pred):
    """IDTP: the largest total of matched frames over one-to-one ground-truth id <-> track id pairings."""
    if len(hit_gt) == 0:
        return 0
    gt_index = np.unique(hit_gt, return_inverse=True)[1]
    pred_values, pred_index = np.unique(hit_pred, return_inverse=True)
    frames_together = np.bincount(gt_index * len(pred_values) + pred_index,
                                  minlength=(gt_index.max() + 1) * len(pred_values))
    frames_together = frames_together.reshape(-1, len(pred_values))
    rows, cols = linear_sum_assignment(frames_together, maximize=True)
    return int(frames_together[rows, cols].sum())
