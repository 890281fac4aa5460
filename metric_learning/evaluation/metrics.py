"""Retrieval metrics: CMC / mAP / mINP under the ReID protocol, and leave-one-out Recall@K.

ReID protocol (Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015), per query:

- gallery images with the query's person id *and* camera are ignored (finding the same person in the same
  camera is not re-identification); a camera id of -1 means "unknown" and never filters;
- junk images (pid -1 by default, ``junk_pids``) are ignored for every query;
- every other gallery image counts: same id = true match, any other id (including Market's distractors,
  pid 0) = negative;
- a query with no true match left is skipped and counted in ``num_skipped_query``.

With ``r_1 < r_2 < ... < r_M`` the 1-based ranks of a query's M true matches among its counted gallery
images (ascending distance):

- CMC@k  = 1 if r_1 <= k, averaged over queries (Rank-1, Rank-5, ...);
- AP     = (1/M) * sum_i  i / r_i           (precision at each true match; non-interpolated, as in
           torchreid / fast-reid, not the trapezoid rule of the original Market-1501 MATLAB code);
- INP    = M / r_M                           (Ye et al., "Deep Learning for Person Re-identification:
           A Survey and Outlook", TPAMI 2021: how much of the list must be read to find every match).

Only the ranks of the true matches are needed, and the rank of a match is the number of counted gallery
images that come before it, so no row is ever sorted: for a block of queries the distances to the whole
gallery are computed with one matmul and each true match is compared against its row (a vectorised count).

Ties: two gallery images at exactly the same distance are ordered by gallery index, as a stable sort of
the row would order them (``np.argsort(kind="stable")``). The results then equal the classic argsort-based
code of torchreid / fast-reid whenever a row has no ties (their default argsort orders ties arbitrarily).
Distances are compared in float32.

Distances: ``cosine`` = 1 - cos(q, g) on L2-normalised features (default); ``euclidean`` = squared Euclidean
distance, which orders every row exactly like the Euclidean distance.
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

METRICS = ("cosine", "euclidean")
DEFAULT_RANKS = (1, 5, 10)
JUNK_PIDS = (-1,)
UNKNOWN_CAMERA = -1

#: Key of a gallery image that does not count for a query: larger than every real key.
IGNORED = np.iinfo(np.int64).max

_QUERY_BLOCK = 256            # queries whose distance rows are held at once (256 x 19,732 x 12 B = 61 MB) ...
_BLOCK_BYTES = 64 << 20       # ... fewer when the gallery is so large that they would exceed this
_COMPARE_BUDGET = 1 << 21     # booleans per vectorised comparison, small enough to stay in cache


def as_features(x, name):
    """``x`` as a C-contiguous float32 [N, D] array; ValueError naming ``name`` when it cannot be one."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError("%s must be a non-empty 2-D [N, D] array, got shape %s" % (name, x.shape))
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError("%s must be numeric, got dtype %s" % (name, x.dtype))
    x = np.ascontiguousarray(x, dtype=np.float32)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise ValueError("%s has NaN or infinite values in %d of %d rows (first: row %d)"
                         % (name, bad.sum(), len(x), np.flatnonzero(bad)[0]))
    return x


def available_cpus():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def l2_normalize(x):
    """Rows scaled to unit length; an all-zero row stays zero (its cosine distance to anything is 1)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.float32(1e-12))


def check_metric(metric):
    if metric not in METRICS:
        raise ValueError("unknown metric %r; choose one of %s" % (metric, ", ".join(METRICS)))
    return metric


class FeatureDistance:
    """Distances from rows of ``a`` to every row of ``b``, computed a block of rows at a time.

    cosine: ``1 - <a, b>`` after L2 normalisation; euclidean: ``|a|^2 + |b|^2 - 2 <a, b>`` (squared).
    Both come from one float32 matmul per block and are clipped at 0 (rounding can go slightly below).
    """

    def __init__(self, a, b, metric="cosine", names=("query features", "gallery features")):
        self.metric = check_metric(metric)
        a, b = as_features(a, names[0]), as_features(b, names[1])
        if a.shape[1] != b.shape[1]:
            raise ValueError("%s have dimension %d but %s have %d" % (names[0], a.shape[1], names[1], b.shape[1]))
        if metric == "cosine":
            a, b = l2_normalize(a), l2_normalize(b)
        self.a, self.b = a, b
        self.a_sq = np.einsum("ij,ij->i", a, a)
        self.b_sq = np.einsum("ij,ij->i", b, b)

    @property
    def shape(self):
        return len(self.a), len(self.b)

    def columns(self, index):
        """The same distances restricted to columns ``index`` of ``b``."""
        other = object.__new__(FeatureDistance)
        other.metric, other.a, other.a_sq = self.metric, self.a, self.a_sq
        other.b, other.b_sq = self.b[index], self.b_sq[index]
        return other

    def rows(self, index, columns=slice(None)):
        """float32 ``[len(index), len(columns)]`` distances of rows ``index`` of ``a`` to rows ``columns``
        of ``b`` (default: all of ``b``)."""
        dist = self.a[index] @ self.b[columns].T
        if self.metric == "cosine":
            np.subtract(1.0, dist, out=dist)
        else:
            dist *= -2.0
            dist += self.a_sq[index][:, None]
            dist += self.b_sq[columns][None, :]
        return np.maximum(dist, 0.0, out=dist)

    def pairs(self, i, j):
        """float32 distances of the pairs ``(a[i[t]], b[j[t]])``, in blocks to bound the gathered copies."""
        out = np.empty(len(i), np.float32)
        step = max(1, (1 << 24) // self.a.shape[1])
        for s in range(0, len(i), step):
            ii, jj = i[s:s + step], j[s:s + step]
            dot = np.einsum("ij,ij->i", self.a[ii], self.b[jj])
            out[s:s + step] = 1.0 - dot if self.metric == "cosine" else self.a_sq[ii] + self.b_sq[jj] - 2.0 * dot
        return np.maximum(out, 0.0, out=out)


class MatrixDistance:
    """A precomputed ``[Q, G]`` distance matrix behind the same interface as :class:`FeatureDistance`."""

    def __init__(self, distmat, column_index=None):
        distmat = np.asarray(distmat)
        if distmat.ndim != 2 or 0 in distmat.shape:
            raise ValueError("distance matrix must be a non-empty 2-D [Q, G] array, got shape %s" % (distmat.shape,))
        if np.isnan(distmat).any():
            raise ValueError("distance matrix has NaN values")
        self.distmat = distmat
        self.column_index = column_index

    @property
    def shape(self):
        q, g = self.distmat.shape
        return q, g if self.column_index is None else len(self.column_index)

    def columns(self, index):
        return MatrixDistance(self.distmat, index if self.column_index is None else self.column_index[index])

    def rows(self, index):
        dist = self.distmat[index]
        if self.column_index is not None:
            dist = dist[:, self.column_index]
        return np.ascontiguousarray(dist, dtype=np.float32)


def as_distance(dist_or_feats, metric="cosine"):
    """A distance object from a ``[Q, G]`` distance matrix (array or nested list) or a
    ``(query_feats, gallery_feats)`` tuple."""
    if isinstance(dist_or_feats, (FeatureDistance, MatrixDistance)):
        return dist_or_feats
    if isinstance(dist_or_feats, tuple):
        if len(dist_or_feats) != 2:
            raise ValueError("features must be given as a (query_feats, gallery_feats) tuple, got %d items"
                             % len(dist_or_feats))
        return FeatureDistance(dist_or_feats[0], dist_or_feats[1], metric)
    return MatrixDistance(dist_or_feats)


def order_keys(values, columns, num_columns):
    """int64 keys that order float32 ``values`` by (value, column) as a stable sort would.

    ``key = (order(value) + 2**31) * num_columns + column``, where ``order`` reads the IEEE-754 bits as an
    int32: non-negative floats compare like their bit patterns; negative ones compare in reverse, so when
    there are any their magnitude bits are flipped (after making -0.0 +0.0). ``columns`` broadcasts
    against ``values``.
    """
    values = np.ascontiguousarray(values, dtype=np.float32)
    bits = values.view(np.int32)
    if bits.size and bits.min() < 0:
        bits = (values + np.float32(0.0)).view(np.int32)
        np.bitwise_xor(bits, np.int32(0x7FFFFFFF), out=bits, where=bits < 0)
    keys = np.multiply(bits, np.int64(num_columns), dtype=np.int64)
    keys += np.asarray(columns, dtype=np.int64) + (1 << 31) * num_columns
    return keys


def sort_keys(dist):
    """int64 keys that order each row of ``dist`` as a stable sort of its float32 distances would."""
    return order_keys(dist, np.arange(dist.shape[1]), dist.shape[1])


def concat_ranges(starts, counts):
    """``concatenate([arange(s, s + c) for s, c in zip(starts, counts)])`` without the Python loop."""
    counts = np.asarray(counts, dtype=np.int64)
    ends = np.cumsum(counts)
    offsets = np.repeat(np.asarray(starts, np.int64) - ends + counts, counts)
    return np.arange(ends[-1] if len(ends) else 0, dtype=np.int64) + offsets


def _block_rows(num_columns):
    """Rows of distances (float32) and sort keys (int64) held at once for ``num_columns`` columns."""
    return max(1, min(_QUERY_BLOCK, _BLOCK_BYTES // (12 * num_columns)))


def _labels(values, length, name, default=None):
    if values is None:
        return np.full(length, default, dtype=np.int64)
    values = np.asarray(values)
    if values.shape != (length,):
        raise ValueError("%s must have one entry per row (%d), got shape %s" % (name, length, values.shape))
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError("%s must be integers, got dtype %s" % (name, values.dtype))
    return values.astype(np.int64)


def check_ranks(ranks):
    ranks = tuple(sorted({int(k) for k in ranks}))
    if not ranks or ranks[0] < 1:
        raise ValueError("ranks must be positive integers such as 1,5,10; got %r" % (ranks,))
    return ranks


class _Pairs:
    """(query, gallery) index pairs grouped by query, as a CSR-like structure."""

    def __init__(self, query, gallery, num_query):
        self.count = np.bincount(query, minlength=num_query)
        self.start = np.cumsum(self.count) - self.count
        self.gallery = gallery

    def of(self, queries):
        """``(local row, gallery index)`` of every pair of ``queries``."""
        counts = self.count[queries]
        return np.repeat(np.arange(len(queries)), counts), self.gallery[concat_ranges(self.start[queries], counts)]


def _match_pairs(q_pids, g_pids, q_camids, g_camids):
    """True-match pairs and same-id-same-camera (ignored) pairs, both grouped by query.

    Gallery images are bucketed by pid with one stable argsort; each query's same-id images are then a
    contiguous slice of that order, in gallery-index order.
    """
    order = np.argsort(g_pids, kind="stable")
    sorted_pids = g_pids[order]
    lo = np.searchsorted(sorted_pids, q_pids, side="left")
    counts = np.searchsorted(sorted_pids, q_pids, side="right") - lo
    query = np.repeat(np.arange(len(q_pids)), counts)
    gallery = order[concat_ranges(lo, counts)]
    same_camera = (q_camids[query] == g_camids[gallery]) & (q_camids[query] != UNKNOWN_CAMERA)
    return (_Pairs(query[~same_camera], gallery[~same_camera], len(q_pids)),
            _Pairs(query[same_camera], gallery[same_camera], len(q_pids)))


def count_true(mask, axis):
    """``np.count_nonzero(mask, axis)`` of a boolean array, summing its bytes as int8 into int32 instead
    (about 4x faster: count_nonzero along an axis converts every element to a machine integer first)."""
    return mask.view(np.int8).sum(axis=axis, dtype=np.int32)


def _match_ranks(keys, match_keys, count):
    """0-based ranks: for each match key, how many keys of its row are smaller (a vectorised count).

    Row r has ``count[r]`` real match keys (the rest is padding, left at 0). Rows come sorted by count, so
    a step of rows ``[start, stop)`` compares ``count[stop - 1]`` keys per row against the whole row.
    """
    ranks = np.zeros(match_keys.shape, np.int64)
    limit = max(1, _COMPARE_BUDGET // keys.shape[1])
    start = 0
    while start < len(keys):
        rows = np.arange(start, len(keys))
        fits = np.searchsorted((rows - start + 1) * count[rows], limit, side="right")   # non-decreasing
        stop = start + max(1, fits)
        width = count[stop - 1]
        ranks[start:stop, :width] = count_true(keys[start:stop, None, :] < match_keys[start:stop, :width, None], 2)
        start = stop
    return ranks


def _block_results(distance, queries, matches, ignored):
    """``(first_rank, ap, inp)`` of one block of queries that all have at least one true match."""
    keys = sort_keys(distance.rows(queries))
    keys[ignored.of(queries)] = IGNORED
    count = matches.count[queries]
    slot = np.arange(count.max())
    is_match = slot < count[:, None]
    # Pad each row with copies of its last match; the copies are masked out below.
    match_index = matches.start[queries][:, None] + np.minimum(slot, count[:, None] - 1)
    match_keys = keys[np.arange(len(queries))[:, None], matches.gallery[match_index]]
    ranks = np.sort(np.where(is_match, _match_ranks(keys, match_keys, count), IGNORED), axis=1)
    precision = (slot + 1) / (ranks + 1.0)
    ap = np.where(is_match, precision, 0.0).sum(axis=1) / count
    inp = count / (ranks[np.arange(len(queries)), count - 1] + 1.0)
    return ranks[:, 0], ap, inp


def query_results(distance, q_pids, g_pids, q_camids, g_camids, workers=None):
    """Per-query ``first_rank`` (0-based), ``ap``, ``inp`` and ``num_matches`` (junk already removed).

    Skipped queries (no true match) have ``num_matches == 0``, ``first_rank == -1`` and NaN AP/INP.
    Blocks of queries run on ``workers`` threads (default: one per CPU); numpy releases the GIL in the
    matmul, comparisons and counts, so the single-threaded parts of one block overlap another's.
    """
    num_query = len(q_pids)
    matches, ignored = _match_pairs(q_pids, g_pids, q_camids, g_camids)
    first_rank = np.full(num_query, -1, np.int64)
    ap = np.full(num_query, np.nan)
    inp = np.full(num_query, np.nan)
    # Queries sorted by their number of matches, so the matches compared together pad to a similar width.
    order = np.flatnonzero(matches.count)
    order = order[np.argsort(matches.count[order], kind="stable")]
    step = _block_rows(len(g_pids))
    blocks = [order[s:s + step] for s in range(0, len(order), step)]
    with ThreadPoolExecutor(max_workers=workers or available_cpus()) as pool:
        for queries, (first, block_ap, block_inp) in zip(
                blocks, pool.map(lambda q: _block_results(distance, q, matches, ignored), blocks)):
            first_rank[queries], ap[queries], inp[queries] = first, block_ap, block_inp
    return {"first_rank": first_rank, "ap": ap, "inp": inp, "num_matches": matches.count}


def summarize(results, ranks, subset=None):
    """Aggregate :func:`query_results` over all queries or the boolean mask ``subset``."""
    take = np.ones(len(results["ap"]), bool) if subset is None else subset
    valid = take & (results["num_matches"] > 0)
    summary = {}
    for k in ranks:
        summary["rank%d" % k] = float(np.mean(results["first_rank"][valid] < k)) if valid.any() else None
    summary["mAP"] = float(np.mean(results["ap"][valid])) if valid.any() else None
    summary["mINP"] = float(np.mean(results["inp"][valid])) if valid.any() else None
    summary["num_query"] = int(take.sum())
    summary["num_valid_query"] = int(valid.sum())
    summary["num_skipped_query"] = int(take.sum() - valid.sum())
    return summary


def camera_label(camid):
    """Market-style camera name: camid 0 -> 'c1'; -1 -> 'unknown'."""
    return "unknown" if camid == UNKNOWN_CAMERA else "c%d" % (camid + 1)


def evaluate_ranking(dist_or_feats, q_pids, g_pids, q_camids=None, g_camids=None, ranks=DEFAULT_RANKS,
                     metric="cosine", junk_pids=JUNK_PIDS, per_camera=False):
    """CMC Rank-k, mAP and mINP of a query set against a gallery under the ReID protocol.

    ``dist_or_feats``: a ``[Q, G]`` distance matrix (smaller = more similar) or a ``(q_feats, g_feats)`` tuple,
    whose distances use ``metric`` ('cosine' or 'euclidean'). Camera ids default to unknown (-1: no camera
    filtering). Returns ``{'rank1': .., 'rank5': .., 'rank10': .., 'mAP': .., 'mINP': .., 'num_query': ..,
    'num_valid_query': .., 'num_skipped_query': .., 'num_gallery': non-junk gallery images}`` (metrics as
    fractions in [0, 1]) and, with
    ``per_camera``, ``'per_camera': {'c1': {...}, ...}`` grouped by query camera.
    Raises ValueError when no query has a true match.
    """
    distance = as_distance(dist_or_feats, metric)
    num_query, num_gallery = distance.shape
    q_pids = _labels(q_pids, num_query, "q_pids")
    g_pids = _labels(g_pids, num_gallery, "g_pids")
    q_camids = _labels(q_camids, num_query, "q_camids", UNKNOWN_CAMERA)
    g_camids = _labels(g_camids, num_gallery, "g_camids", UNKNOWN_CAMERA)
    ranks = check_ranks(ranks)
    # Junk is ignored by every query: drop those columns once instead of masking them per query.
    keep = np.flatnonzero(~np.isin(g_pids, list(junk_pids)))
    if len(keep) < num_gallery:
        distance, g_pids, g_camids = distance.columns(keep), g_pids[keep], g_camids[keep]
    results = query_results(distance, q_pids, g_pids, q_camids, g_camids)
    summary = summarize(results, ranks)
    summary["num_gallery"] = len(g_pids)
    if summary["num_valid_query"] == 0:
        raise ValueError("none of the %d queries has a true match in the gallery (same pid, another camera, "
                         "not junk); check that query and gallery ids/cameras come from the same dataset" % num_query)
    if per_camera:
        summary["per_camera"] = {camera_label(cam): summarize(results, ranks, q_camids == cam)
                                 for cam in np.unique(q_camids)}
    return summary


def recall_at_k(feats, labels, ks=(1,), metric="cosine"):
    """Leave-one-out Recall@K: each image queries all the others (itself excluded); a hit if any of its K
    nearest neighbours has its label. Returns ``{k: recall}`` over all N images (an image whose class has
    no other image is a miss), as the classic metric-learning ``eval.py`` computed ``test_recall``.

    On a ReID set this overstates accuracy: the other images of the same person include shots from the
    same camera moments apart, which the ReID protocol (:func:`evaluate_ranking`) ignores.
    """
    distance = FeatureDistance(feats, feats, metric, names=("features", "features"))
    labels = _labels(labels, distance.shape[0], "labels")
    ks = check_ranks(ks)
    num = len(labels)
    nearest_same_rank = np.empty(num, np.int64)
    step = _block_rows(num)
    for s in range(0, num, step):
        rows = np.arange(s, min(s + step, num))
        local = np.arange(len(rows))
        keys = sort_keys(distance.rows(rows))
        keys[local, rows] = IGNORED
        nearest_same = np.where(labels[rows][:, None] == labels[None, :], keys, IGNORED).min(axis=1)
        rank = count_true(keys < nearest_same[:, None], 1)
        nearest_same_rank[rows] = np.where(nearest_same == IGNORED, num, rank)
    return {k: float(np.mean(nearest_same_rank < k)) for k in ks}
