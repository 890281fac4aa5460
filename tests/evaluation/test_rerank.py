"""k-reciprocal re-ranking against a slow, obviously-correct transcription of Zhong et al.'s algorithm."""
import numpy as np
import pytest

from metric_learning.evaluation import rerank
from metric_learning.evaluation.rerank import RerankMemoryError, k_reciprocal_distance


def reference_rerank(q_feats, g_feats, k1, k2, lambda_value, metric, stats=None):
    """Dense N x N loops, one step of the paper at a time (float64). ``stats`` counts expansion decisions."""
    x = np.concatenate([q_feats, g_feats]).astype(np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        dist = 1 - x @ x.T
    else:
        dist = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(dist, 0)
    dist = np.maximum(dist, 0)
    dist = dist / dist.max(axis=1, keepdims=True)
    num, num_query = len(x), len(q_feats)
    rank = np.argsort(dist, axis=1, kind="stable")

    def k_reciprocal(i, k):
        return [j for j in rank[i, :k + 1] if i in rank[j, :k + 1]]

    v = np.zeros((num, num))
    for i in range(num):
        r = k_reciprocal(i, k1)
        expansion = list(r)
        for c in r:
            r_half = k_reciprocal(c, int(np.around(k1 / 2.0)))
            accepted = len(set(r_half) & set(r)) > 2.0 / 3 * len(r_half)
            if stats is not None:
                stats[accepted] += 1
            if accepted:
                expansion += r_half
        expansion = np.unique(expansion)
        weight = np.exp(-dist[i, expansion])
        v[i, expansion] = weight / weight.sum()
    if k2 != 1:
        v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(num)])
    out = np.zeros((num_query, num - num_query))
    for i in range(num_query):
        for j in range(num - num_query):
            common = np.minimum(v[i], v[num_query + j]).sum()
            union = np.maximum(v[i], v[num_query + j]).sum()
            out[i, j] = (1 - lambda_value) * (1 - common / union) + lambda_value * dist[i, num_query + j]
    return out


def clustered(seed, num_query=15, num_gallery=45, ids=12, dim=8):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((ids, dim)) * 2
    labels = rng.integers(0, ids, num_query + num_gallery)
    feats = (centers[labels] + rng.standard_normal((len(labels), dim))).astype(np.float32)
    return feats[:num_query], feats[num_query:]


@pytest.mark.parametrize("k1,k2,lambda_value,metric", [
    (20, 6, 0.3, "cosine"),      # the defaults
    (5, 3, 0.3, "euclidean"),
    (4, 1, 0.5, "cosine"),       # no query expansion
    (7, 8, 0.0, "cosine"),       # Jaccard only
    (6, 2, 1.0, "euclidean"),    # original distance only
])
def test_matches_the_reference(k1, k2, lambda_value, metric):
    q, g = clustered(0)
    stats = {True: 0, False: 0}
    expected = reference_rerank(q, g, k1, k2, lambda_value, metric, stats)
    assert stats[True] > 0 and stats[False] > 0      # the 2/3 expansion rule goes both ways here
    got = k_reciprocal_distance(q, g, k1, k2, lambda_value, metric)
    assert got.shape == (15, 45) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-6)


@pytest.mark.parametrize("k1,k2", [(20, 6), (5, 3)])
def test_small_blocks_give_the_same_result(monkeypatch, k1, k2):
    q, g = clustered(1, num_query=20, num_gallery=60)
    default = k_reciprocal_distance(q, g, k1, k2)
    np.testing.assert_allclose(default, reference_rerank(q, g, k1, k2, 0.3, "cosine"), atol=2e-6)
    # 80 points in 3 (k1=20) or 7 (k1=5) square blocks; one straddles the query/gallery boundary (20)
    monkeypatch.setattr(rerank, "_PAIR_BLOCK_MIN", 1)
    monkeypatch.setattr(rerank, "_PAIR_BLOCKS", 7)
    monkeypatch.setattr(rerank, "_CANDIDATE_CAP", 1)      # more than k candidates: keep the block's k nearest
    monkeypatch.setattr(rerank, "_RECIPROCAL_BLOCK", 7)
    monkeypatch.setattr(rerank, "_PAIR_BUDGET", 10)
    monkeypatch.setattr(rerank, "_JACCARD_ROWS", 3)
    calls = []
    smallest_k = rerank.smallest_k
    monkeypatch.setattr(rerank, "smallest_k", lambda dist, k: calls.append(len(dist)) or smallest_k(dist, k))
    np.testing.assert_allclose(k_reciprocal_distance(q, g, k1, k2, workers=2), default, atol=1e-6)
    blocks = len(rerank._square_blocks(80, k1 + 1))
    assert blocks == (3 if k1 == 20 else 7)
    if k1 == 5:     # some rows had more than k candidates in a block: capped to the block's k nearest
        assert len(calls) > blocks


def test_smallest_k_equals_a_stable_argsort_with_ties():
    rng = np.random.default_rng(3)
    dist = np.round(rng.random((50, 400)) * 6).astype(np.float32)     # heavy ties
    for k in (1, 5, 21, 400):
        assert np.array_equal(rerank.smallest_k(dist, k), np.argsort(dist, axis=1, kind="stable")[:, :k])


def test_refuses_a_problem_over_the_memory_budget_before_allocating():
    with pytest.raises(RerankMemoryError, match=r"re-ranking 100000 queries x 1000000 gallery .* GB"):
        rerank.check_memory(100000, 1000000, 512)
    q, g = clustered(2)
    with pytest.raises(RerankMemoryError, match="budget"):
        k_reciprocal_distance(q, g, max_memory_gb=1e-4)
    assert issubclass(RerankMemoryError, ValueError)


def test_market1501_size_fits_four_gigabytes():
    # 3,368 queries + 15,913 gallery images (junk dropped) = 19,281, 512-d features, default k1/k2
    parts = rerank.estimate_memory(3368, 15913, 512)
    assert parts["total"] < 4 * 2 ** 30
    assert parts["total"] == sum(v for name, v in parts.items() if name != "total")


@pytest.mark.parametrize("kwargs,message", [
    ({"k1": 0}, "k1"), ({"k2": 22}, "k2"), ({"lambda_value": 1.5}, "lambda_value"), ({"metric": "l1"}, "metric"),
])
def test_bad_parameters(kwargs, message):
    q, g = clustered(4)
    with pytest.raises(ValueError, match=message):
        k_reciprocal_distance(q, g, **kwargs)
