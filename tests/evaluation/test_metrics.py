"""CMC / mAP / mINP and leave-one-out Recall@K against hand-worked answers and a slow reference."""
import numpy as np
import pytest

from metric_learning.evaluation import metrics
from metric_learning.evaluation.metrics import evaluate_ranking, recall_at_k


def ranked_gallery(match_ranks, length):
    """One query row: gallery image j sits at rank j + 1 (distance j); true matches (pid 1) at the 1-based
    ``match_ranks``, everything else another id; all in another camera than the query."""
    pids = np.full(length, 2)
    pids[np.asarray(match_ranks) - 1] = 1
    return np.arange(length, dtype=np.float32), pids


def test_course_slide_average_precision_examples():
    # Query A: matches at ranks 1, 3, 6, 9, 10 -> AP = (1/1 + 2/3 + 3/6 + 4/9 + 5/10) / 5 = 0.6222
    # Query B: matches at ranks 2, 5, 7      -> AP = (1/2 + 2/5 + 3/7) / 3          = 0.4429
    dist_a, pids_a = ranked_gallery([1, 3, 6, 9, 10], 10)
    dist_b, pids_b = ranked_gallery([2, 5, 7], 10)
    # Both queries share one gallery of 20 images; each sees the other's block as far-away negatives.
    distmat = np.stack([np.concatenate([dist_a, dist_a + 100]), np.concatenate([dist_b + 100, dist_b])])
    g_pids = np.concatenate([pids_a, pids_b + 10])             # query B's id is 11, its negatives 12
    result = evaluate_ranking(distmat, [1, 11], g_pids, [0, 0], np.ones(20, int))
    assert result["mAP"] == pytest.approx((0.622222 + 0.442857) / 2, abs=1e-6)
    assert result["mAP"] == pytest.approx(0.5325, abs=1e-4)
    ap_a = (1 + 2 / 3 + 3 / 6 + 4 / 9 + 5 / 10) / 5
    ap_b = (1 / 2 + 2 / 5 + 3 / 7) / 3
    assert result["mAP"] == pytest.approx((ap_a + ap_b) / 2, rel=1e-12)
    # INP = matches / rank of the last match: 5/10 and 3/7
    assert result["mINP"] == pytest.approx((5 / 10 + 3 / 7) / 2, rel=1e-12)
    assert (result["rank1"], result["rank5"], result["rank10"]) == (0.5, 1.0, 1.0)
    assert (result["num_query"], result["num_valid_query"], result["num_skipped_query"]) == (2, 2, 0)


def test_same_id_same_camera_is_ignored_but_same_camera_negatives_count():
    # gallery: same id + same camera (closest, ignored), other id + same camera (counts), same id + other camera
    distmat = [[0.1, 0.2, 0.3]]
    result = evaluate_ranking(distmat, [7], [7, 8, 7], [0], [0, 0, 2])
    assert result["rank1"] == 0.0 and result["rank5"] == 1.0
    assert result["mAP"] == pytest.approx(0.5) and result["mINP"] == pytest.approx(0.5)
    # Unknown cameras (-1) never filter: the same-camera image is a normal match again.
    unknown = evaluate_ranking(distmat, [7], [7, 8, 7])
    assert unknown["rank1"] == 1.0
    assert unknown["mAP"] == pytest.approx((1 / 1 + 2 / 3) / 2)


def test_junk_is_ignored_and_distractors_are_negatives():
    distmat = [[0.1, 0.2, 0.3, 0.4]]
    g_pids = [-1, 0, 3, 0]        # junk, distractor, the match, distractor
    result = evaluate_ranking(distmat, [3], g_pids, [0], [1, 1, 1, 1])
    assert result["rank1"] == 0.0 and result["mAP"] == pytest.approx(1 / 2)   # match at rank 2 of 3
    counted = evaluate_ranking(distmat, [3], g_pids, [0], [1, 1, 1, 1], junk_pids=())
    assert counted["mAP"] == pytest.approx(1 / 3)                              # junk now a negative
    other_junk = evaluate_ranking(distmat, [3], g_pids, [0], [1, 1, 1, 1], junk_pids=(-1, 0))
    assert other_junk["rank1"] == 1.0


def test_ties_are_broken_by_gallery_index():
    # negative, match, negative at the same distance: a stable sort puts the match second
    result = evaluate_ranking([[0.5, 0.5, 0.5]], [1], [2, 1, 3], [0], [1, 1, 1])
    assert result["mAP"] == pytest.approx(1 / 2)
    # the match first among equals: rank 1
    result = evaluate_ranking([[0.5, 0.5, 0.2]], [1], [1, 2, 3], [0], [1, 1, 1])
    assert result["mAP"] == pytest.approx(1 / 2)
    result = evaluate_ranking([[0.5, 0.5, 0.7]], [1], [1, 2, 3], [0], [1, 1, 1])
    assert result["rank1"] == 1.0
    # -0.0 and +0.0 are the same distance
    result = evaluate_ranking(np.array([[0.0, -0.0]], np.float32), [1], [2, 1], [0], [1, 1])
    assert result["mAP"] == pytest.approx(1 / 2)


def test_query_without_valid_match_is_skipped_and_counted():
    distmat = [[0.1, 0.2], [0.1, 0.2], [0.3, 0.1]]
    # query 0 (id 5): its only image is in its own camera; query 1 (id 9) has no gallery image at all
    result = evaluate_ranking(distmat, [5, 9, 6], [5, 6], [0, 0, 0], [0, 1], per_camera=True)
    assert (result["num_query"], result["num_valid_query"], result["num_skipped_query"]) == (3, 1, 2)
    assert result["rank1"] == 1.0 and result["mAP"] == 1.0
    with pytest.raises(ValueError, match="none of the 2 queries has a true match"):
        evaluate_ranking(distmat[:2], [5, 9], [5, 6], [0, 0], [0, 1])


def test_euclidean_and_cosine_rank_differently():
    query = [[1.0, 0.0]]
    gallery = [[10.0, 1.0], [0.8, 0.5]]   # same direction but far; nearby but at 32 degrees
    pids = ([1], [1, 2])
    assert evaluate_ranking((query, gallery), *pids, metric="cosine")["rank1"] == 1.0
    assert evaluate_ranking((query, gallery), *pids, metric="euclidean")["mAP"] == pytest.approx(0.5)
    # cosine ignores the scale of the features, euclidean does not
    scaled = evaluate_ranking((np.array(query) * 1000, gallery), *pids, metric="cosine")
    assert scaled["rank1"] == 1.0
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate_ranking((query, gallery), *pids, metric="manhattan")


def reference_evaluate(distmat, q_pids, g_pids, q_camids, g_camids, ranks):
    """The plain per-query loop of the classic tools, with a stable sort."""
    cmc, aps, inps = [], [], []
    for i in range(len(q_pids)):
        order = np.argsort(distmat[i], kind="stable")
        counted = ~(((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i])) | (g_pids[order] == -1))
        hits = (g_pids[order] == q_pids[i])[counted]
        if not hits.any():
            continue
        positions = np.flatnonzero(hits)
        cmc.append([positions[0] < k for k in ranks])
        aps.append(np.mean(np.arange(1, len(positions) + 1) / (positions + 1.0)))
        inps.append(len(positions) / (positions[-1] + 1.0))
    return np.mean(cmc, axis=0), np.mean(aps), np.mean(inps), len(aps)


@pytest.mark.parametrize("small_blocks", [False, True])
def test_matches_the_plain_loop_on_random_data_with_ties(monkeypatch, small_blocks):
    if small_blocks:  # many blocks and comparison steps: block boundaries must not matter
        monkeypatch.setattr(metrics, "_QUERY_BLOCK", 7)
        monkeypatch.setattr(metrics, "_COMPARE_BUDGET", 50)
    rng = np.random.default_rng(0)
    num_query, num_gallery = 120, 700
    q_pids, g_pids = rng.integers(1, 44, num_query), rng.integers(-1, 40, num_gallery)  # ids 40-43: no match
    q_camids, g_camids = rng.integers(0, 4, num_query), rng.integers(0, 4, num_gallery)
    distmat = np.round(rng.random((num_query, num_gallery)) * 30).astype(np.float32)   # many ties
    ranks = (1, 3, 10)
    result = evaluate_ranking(distmat, q_pids, g_pids, q_camids, g_camids, ranks=ranks, per_camera=True)
    cmc, mean_ap, mean_inp, valid = reference_evaluate(distmat, q_pids, g_pids, q_camids, g_camids, ranks)
    assert [result["rank%d" % k] for k in ranks] == pytest.approx(cmc, abs=1e-12)
    assert result["mAP"] == pytest.approx(mean_ap, abs=1e-12)
    assert result["mINP"] == pytest.approx(mean_inp, abs=1e-12)
    assert result["num_valid_query"] == valid < num_query
    for cam in range(4):
        subset = q_camids == cam
        _, cam_ap, _, cam_valid = reference_evaluate(distmat[subset], q_pids[subset], g_pids, q_camids[subset],
                                                     g_camids, ranks)
        per_camera = result["per_camera"]["c%d" % (cam + 1)]
        assert per_camera["mAP"] == pytest.approx(cam_ap, abs=1e-12)
        assert per_camera["num_valid_query"] == cam_valid
        assert per_camera["num_query"] == subset.sum()


def test_features_give_the_same_result_as_their_distance_matrix():
    rng = np.random.default_rng(1)
    q, g = rng.standard_normal((30, 16)), rng.standard_normal((200, 16))
    q_pids, g_pids = rng.integers(0, 10, 30), rng.integers(0, 10, 200)
    cams = rng.integers(0, 3, 30), rng.integers(0, 3, 200)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    for metric, distmat in (("cosine", 1 - qn @ gn.T), ("euclidean", ((q[:, None] - g[None]) ** 2).sum(-1))):
        from_feats = evaluate_ranking((q, g), q_pids, g_pids, *cams, metric=metric)
        cmc, mean_ap, _, _ = reference_evaluate(distmat, q_pids, g_pids, *cams, (1, 5, 10))
        assert from_feats["mAP"] == pytest.approx(mean_ap, abs=1e-6)
        assert from_feats["rank1"] == pytest.approx(cmc[0])


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="g_pids must have one entry per row"):
        evaluate_ranking([[0.1, 0.2]], [1], [1, 2, 3])
    with pytest.raises(ValueError, match="NaN"):
        evaluate_ranking(([[np.nan, 1.0]], [[1.0, 0.0]]), [1], [1])
    with pytest.raises(ValueError, match="dimension 2 .* 3"):
        evaluate_ranking(([[0.0, 1.0]], [[1.0, 0.0, 0.0]]), [1], [1])
    with pytest.raises(ValueError, match="ranks"):
        evaluate_ranking([[0.1]], [1], [1], ranks=(0, 5))


def test_leave_one_out_recall_hand_worked():
    # points on a line: x = 0 (a), 1 (b), 3 (a), 7 (b), 8 (c, alone in its class)
    feats = np.array([[0, 0], [1, 0], [3, 0], [7, 0], [8, 0]], np.float32)
    labels = [0, 1, 0, 1, 2]
    # nearest same-class rank: x=0 -> 2 (1 is nearer); x=1 -> 3; x=3 -> 2; x=7 -> 3; x=8 -> never
    recall = recall_at_k(feats, labels, ks=(1, 2, 3, 4), metric="euclidean")
    assert recall == {1: 0.0, 2: pytest.approx(2 / 5), 3: pytest.approx(4 / 5), 4: pytest.approx(4 / 5)}


def test_leave_one_out_recall_excludes_the_image_itself():
    feats = np.array([[1, 0], [1, 0], [0, 1], [0.1, 1]], np.float32)
    # each image's twin (same class) is found; itself, at distance 0, is not counted
    assert recall_at_k(feats, [0, 0, 1, 1]) == {1: 1.0}
    assert recall_at_k(feats, [0, 1, 2, 3]) == {1: 0.0}


def test_leave_one_out_recall_matches_brute_force(monkeypatch):
    monkeypatch.setattr(metrics, "_QUERY_BLOCK", 16)
    rng = np.random.default_rng(2)
    feats = rng.standard_normal((150, 8)).astype(np.float32)
    labels = rng.integers(0, 20, 150)
    normed = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    dist = 1 - normed @ normed.T
    np.fill_diagonal(dist, np.inf)
    order = np.argsort(dist, axis=1, kind="stable")
    hits = labels[order] == labels[:, None]
    expected = {k: float(np.mean(hits[:, :k].any(axis=1))) for k in (1, 5, 10)}
    assert recall_at_k(feats, labels, ks=(1, 5, 10)) == pytest.approx(expected)


def test_sort_keys_order_like_a_stable_sort():
    row = np.array([[3.0, -1.0, 0.0, -0.0, -5.0, np.inf, -np.inf, 1e-30, -1e-30, 2.0, 2.0]], np.float32)
    keys = metrics.sort_keys(row)
    assert np.array_equal(np.argsort(keys[0]), np.argsort(row[0], kind="stable"))
    assert keys[0, 2] < keys[0, 3]   # 0.0 and -0.0 tie, broken by column
