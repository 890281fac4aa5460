"""DeepSORT with our embeddings: run the real tracker of the PyPI package ``deep-sort-realtime`` on a
:class:`metric_learning.tracking.video.TrackingVideo` or a MOTChallenge sequence
(:class:`metric_learning.tracking.mot.MotSequence`) and score it with py-motmetrics (MOTA, IDF1, ID switches).

The appearance model is any *box embedder*, a callable ``embed_fn(frame_bgr, boxes_ltwh) -> float32 [N, D]``
with one L2-normalised row per box: :class:`NetworkBoxEmbedder` wraps a network (a checkpoint through
:class:`metric_learning.evaluation.evaluator.LayerEmbedder`, an exported model through
:class:`metric_learning.deploy.embedders.PredictorEmbedder`), :class:`ColourHistogramEmbedder` is a network-free
baseline. ``embed_fn=None`` runs DeepSORT without appearance (see :func:`run_tracker`).

The tracker gets the embeddings through ``DeepSort.update_tracks(raw_detections, embeds=...)`` with
``embedder=None``, so deep-sort-realtime never imports its own (PyTorch) embedder.
"""
import collections
import os
import time

import numpy as np
from deep_sort_realtime.deepsort_tracker import DeepSort

from metric_learning.data.synthetic import colour_histograms
from metric_learning.deploy.preprocess import Preprocessor, box_crops, resize_crops
from metric_learning.evaluation import metrics
from metric_learning.tracking import draw, mot, metrics as tracking_metrics

#: deep_sort_app's settings (Wojke et al. 2017) for what deep-sort-realtime leaves open: a budget of 100
#: appearance samples per track (deep-sort-realtime's default, no budget, slows down as tracks age)
DEEPSORT_OPTIONS = dict(max_age=30, n_init=3, max_iou_distance=0.7, max_cosine_distance=0.2, nn_budget=100)

TrackerRun = collections.namedtuple("TrackerRun", ["predictions", "embed_seconds", "track_seconds"])
TrackerRun.__doc__ = ("``predictions``: one ``(track ids [m], boxes [m, 4] ltwh)`` per frame; time spent in the "
                      "embedder and in the tracker (frame rendering excluded).")


class NetworkBoxEmbedder:
    """Box embedder over a batch embedder ``embed(NCHW float32) -> [N, D]``: the boxes are cropped as they lie,
    resized to ``image_shape`` (C, H, W) and normalised as the network was trained
    (:class:`metric_learning.deploy.preprocess.Preprocessor`)."""

    def __init__(self, embed, image_shape):
        self.embed = embed
        self.preprocess = Preprocessor.for_network(image_shape)

    def __call__(self, frame_bgr, boxes_ltwh):
        batch = self.preprocess(box_crops(frame_bgr, boxes_ltwh))
        return metrics.l2_normalize(np.asarray(self.embed(batch), np.float32))


class ColourHistogramEmbedder:
    """Network-free box embedder: the joint RGB histogram of the box centre
    (:func:`metric_learning.data.synthetic.colour_histograms`, square-rooted, hence L2-normalised)."""

    def __init__(self, bins=8, size_hw=(128, 64)):
        self.bins, self.size_hw = bins, size_hw

    def __call__(self, frame_bgr, boxes_ltwh):
        rgb = resize_crops(box_crops(frame_bgr, boxes_ltwh), *self.size_hw)[..., ::-1]
        return colour_histograms(rgb, self.bins).astype(np.float32)


def constant_embedder(frame_bgr, boxes_ltwh):
    """A box embedder that tells nobody apart: the same unit vector for every box.

    With it DeepSORT keeps its appearance stage, but every cosine distance is 0, so that stage pairs tracks
    with any detection inside their Kalman gate, serving the most recently seen tracks first and breaking
    remaining ties by index order: DeepSORT's matching cascade without appearance information. Compare
    :func:`run_tracker` with ``embed_fn=None``, which switches the appearance stage off.
    """
    return np.ones((len(boxes_ltwh), 1), np.float32)


def embed_detections(video, embed_fn):
    """``(per-frame [m, D] float32 embeddings of video.detections(t), seconds spent in embed_fn)``.

    Rendering the frames is not timed. Embedding once and tracking several times (:func:`track`) compares
    tracker settings without paying for the network again.
    """
    feats, seconds = [], 0.0
    for t in range(len(video)):
        boxes = video.detections(t)
        if not len(boxes):
            feats.append(None)
            continue
        frame = video.frame(t)
        started = time.perf_counter()
        out = np.asarray(embed_fn(frame, boxes), np.float32)
        seconds += time.perf_counter() - started
        if out.ndim != 2 or len(out) != len(boxes) or not np.isfinite(out).all():
            raise ValueError("the embedder returned %s for the %d boxes of frame %d; expected finite [%d, D]"
                             % (list(out.shape), len(boxes), t, len(boxes)))
        feats.append(out)
    return feats, seconds


def track(video, embeddings=None, **deepsort_options):
    """Track ``video`` with ``deep_sort_realtime.DeepSort`` fed with ``video.detections(t)`` and
    ``embeddings[t]`` (from :func:`embed_detections`; None: no appearance, see :func:`run_tracker`).

    Returns ``(predictions, seconds spent in the tracker)``, predictions being one ``(track ids, boxes)``
    per frame. The reported tracks are deep_sort_app's: confirmed tracks updated in this frame or the one
    before, with their Kalman-filtered box.
    """
    options = dict(DEEPSORT_OPTIONS, **deepsort_options)
    if embeddings is None:
        options["max_cosine_distance"] = -1.0
    tracker = DeepSort(embedder=None, **options)
    predictions, seconds = [], 0.0
    for t in range(len(video)):
        boxes = video.detections(t)
        feats = embeddings[t] if embeddings is not None and len(boxes) else None
        if feats is None:   # update_tracks insists on embeddings, even for a frame without detections
            feats = constant_embedder(None, boxes)
        started = time.perf_counter()
        tracks = tracker.update_tracks([(box.tolist(), 1.0, "person") for box in boxes], embeds=list(feats))
        shown = [track for track in tracks if track.is_confirmed() and track.time_since_update <= 1]
        predictions.append((np.array([int(track.track_id) for track in shown], np.int64),
                            np.array([track.to_ltwh() for track in shown], np.float64).reshape(-1, 4)))
        seconds += time.perf_counter() - started
    return predictions, seconds


def run_tracker(video, embed_fn=None, **deepsort_options):
    """DeepSORT on ``video`` with the box embedder ``embed_fn``; a :class:`TrackerRun`.

    ``deepsort_options`` override :data:`DEEPSORT_OPTIONS` (keyword arguments of ``DeepSort``).

    ``embed_fn=None``: no appearance. DeepSORT matches confirmed tracks by appearance first (within the
    Kalman filter's gate), then tracks seen in the previous frame and new tracks by IoU with the
    Kalman-predicted box. Here the cosine threshold is set below any possible distance, so the appearance
    stage accepts nothing and association is DeepSORT's own IoU stage alone: SORT (Bewley et al. 2016),
    which cannot pick a person up again after two missed frames. (The embeddings it is given are constant
    only because ``update_tracks`` requires some.) :func:`constant_embedder` is the other way to withhold
    appearance, keeping the gated cascade.
    """
    embeddings, embed_seconds = embed_detections(video, embed_fn) if embed_fn is not None else (None, 0.0)
    predictions, track_seconds = track(video, embeddings, **deepsort_options)
    return TrackerRun(predictions, embed_seconds, track_seconds)


def ground_truth(video):
    """One ``(ids, boxes)`` per frame of ``video``, the form :func:`score` compares with."""
    return [video.ground_truth(t) for t in range(len(video))]


def score(video, run, iou_threshold=tracking_metrics.IOU_THRESHOLD):
    """:class:`metric_learning.tracking.metrics.TrackingScores` of a :class:`TrackerRun` on ``video``."""
    return tracking_metrics.score_tracking(ground_truth(video), run.predictions, iou_threshold)


def write_tracks_gif(path, source, predictions, fps, width, num_frames=None):
    """A GIF of the first ``num_frames`` (default: all) frames of ``source`` (a video or a MOTChallenge sequence)
    with the tracks of ``predictions`` (one ``(ids, boxes)`` per frame) drawn, ``width`` pixels wide."""
    count = len(source) if num_frames is None else min(num_frames, len(source))
    draw.write_gif(path, (draw.draw_tracks(source.frame(t), *predictions[t]) for t in range(count)), fps, width)
    return path


MotEvaluation = collections.namedtuple("MotEvaluation", ["scores", "runs"])
MotEvaluation.__doc__ = ("``scores``: ``{sequence name: TrackingScores}`` plus ``metrics.OVERALL``; ``runs``: "
                         "``{sequence name: TrackerRun}``.")


def evaluate_sequences(sequences, embed_fn=None, output_dir=None, gif_width=480, **deepsort_options):
    """DeepSORT with ``embed_fn`` on the public detections of each :class:`metric_learning.tracking.mot.MotSequence`,
    scored against its ground truth (MOT17's rules: pedestrians only, predictions on distractors dropped).

    With ``output_dir``, writes ``<output_dir>/<sequence>.txt`` (MOTChallenge results) and ``<sequence>.gif``
    (the reported tracks drawn on the frames, ``gif_width`` pixels wide; 0: no GIF).
    """
    for sequence in sequences:
        if not sequence.has_ground_truth:
            raise FileNotFoundError("%s has no gt/gt.txt to score against" % sequence.directory)
    accumulators, runs = [], collections.OrderedDict()
    for sequence in sequences:
        run = runs[sequence.name] = run_tracker(sequence, embed_fn, **deepsort_options)
        if output_dir:
            mot.write_results(os.path.join(output_dir, sequence.name + ".txt"), run.predictions)
            if gif_width:
                write_tracks_gif(os.path.join(output_dir, sequence.name + ".gif"), sequence, run.predictions,
                                 sequence.info.frame_rate, gif_width)
        accumulators.append((sequence.name, tracking_metrics.accumulate(sequence.truth, run.predictions,
                                                                        ignored=sequence.ignored)))
    return MotEvaluation(tracking_metrics.score_sequences(accumulators), runs)
