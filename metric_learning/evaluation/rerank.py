"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal Encoding",
CVPR 2017), vectorised with numpy / scipy.sparse and with a memory budget checked up front.

With the N = Q + G query and gallery features together and ``d(i, j)`` their base distance (squared
Euclidean as in the paper's code; for ``metric='cosine'`` ``1 - cos``, which is the squared Euclidean
distance of L2-normalised features halved, so it gives the same result):

1. ``d'(i, j) = d(i, j) / max_j d(i, j)``, and ``N(i, k)`` the k nearest neighbours of i (i itself first);
2. k-reciprocal set ``R(i, k) = {j in N(i, k+1) : i in N(j, k+1)}``;
3. expansion ``R*(i) = R(i, k1)  U  R(c, k1/2)`` for each ``c in R(i, k1)`` with
   ``|R(c, k1/2) & R(i, k1)| > 2/3 |R(c, k1/2)|``  (``k1/2`` rounded half to even, as ``np.around``);
4. ``V[i, j] = exp(-d'(i, j)) / sum_{j' in R*(i)} exp(-d'(i, j'))`` for ``j in R*(i)``, else 0;
5. local query expansion: ``V[i] <- mean of V[j] over j in N(i, k2)`` (skipped when k2 = 1);
6. Jaccard distance ``dJ(i, j) = 1 - sum_k min(V[i,k], V[j,k]) / sum_k max(V[i,k], V[j,k])``; rows of V
   sum to 1, so the denominator is ``2 - numerator``;
7. final distance ``(1 - lambda) * dJ(q, g) + lambda * d'(q, g)`` for query q and gallery g.

Ties in a neighbour list are broken by index (stable sort). The paper's code and its copies (torchreid,
fast-reid) hold dense N x N matrices (Market-1501: 19,281^2 float16 / float32 / int32 = 0.7-1.5 GB each).
Here only what the algorithm reads is kept: the (k1 + 1)-nearest-neighbour lists (from the symmetric
distance matrix computed in square blocks, only those on and above the diagonal), V as a sparse matrix
(a few dozen entries per row), and the Q x G output. The Jaccard numerator is a sparse "min-product"
computed through V's columns (the paper's inverted index), vectorised over blocks of query entries.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import sparse

from metric_learning.evaluation.metrics import IGNORED, FeatureDistance, available_cpus, concat_ranges, order_keys

DEFAULT_K1 = 20
DEFAULT_K2 = 6
DEFAULT_LAMBDA = 0.3
DEFAULT_MAX_MEMORY_GB = 4.0

_PAIR_BLOCKS = 16                   # the N x N distances: about 16 x 16 / 2 square blocks ...
_PAIR_BLOCK_MIN = 1024              # ... of at least 1024 x 1024 (BLAS efficiency, few candidates)
_CANDIDATE_CAP = 4                  # candidates kept per point and block, in units of k (about 1 is typical)
# per block entry: float32 distance, boolean mask, (row, column) int64 from nonzero() and the gathered
# values if every entry were a candidate (worst case)
_DISTANCE_BYTES_PER_ENTRY = 4 + 1 + 16 + 4
_RECIPROCAL_BLOCK = 2048            # rows per vectorised k-reciprocal / expansion check
_PAIR_BUDGET = 1 << 22              # (query entry, gallery entry) pairs per Jaccard step
_JACCARD_ROWS = 256                 # query rows accumulated per Jaccard step


class RerankMemoryError(ValueError):
    """Re-ranking this problem would need more memory than the budget allows."""


def _sizes(num_query, num_gallery, k1, k2):
    num = num_query + num_gallery
    k = min(k1 + 1, num)
    half = min(int(np.around(k1 / 2.0)) + 1, num)
    expansion = min(num, k + k * half)
    expanded = min(num, k2 * expansion) if k2 > 1 else expansion
    return num, k, half, expansion, expanded


def estimate_memory(num_query, num_gallery, dim, k1=DEFAULT_K1, k2=DEFAULT_K2, workers=None):
    """Upper bound, in bytes, of the memory :func:`k_reciprocal_distance` allocates, by part.

    The sparse parts use the worst case (every expansion at its largest); real data needs far less there.
    """
    num, k, half, expansion, expanded = _sizes(num_query, num_gallery, k1, k2)
    blocks = _square_blocks(num, k)
    size = len(blocks[0])
    workers = workers or available_cpus()
    parts = {
        "features": 2 * num * dim * 4,
        "query x gallery output and Jaccard numerator (float32)": 2 * num_query * num_gallery * 4,
        "distance blocks (one per thread)": workers * size * size * _DISTANCE_BYTES_PER_ENTRY,
        "nearest-neighbour candidates (row, key) and their sort per block": (
            (num + 3 * workers * size) * len(blocks) * _CANDIDATE_CAP * k * 16),
        "k-reciprocal checks": _RECIPROCAL_BLOCK * k * half * k * 2,
        "expansion sets and weights": num * expansion * (8 * 3 + 4 * 3),
        "expanded sparse V (and the copy made by the product)": 3 * num * expanded * (4 + 4),
        "Jaccard step": _PAIR_BUDGET * 8 * 6 + (_JACCARD_ROWS + 1) * num_gallery * 8,
    }
    parts["total"] = sum(parts.values())
    return parts


def check_memory(num_query, num_gallery, dim, k1=DEFAULT_K1, k2=DEFAULT_K2, max_memory_gb=DEFAULT_MAX_MEMORY_GB,
                 workers=None):
    """Raise :class:`RerankMemoryError` with the estimate when re-ranking would exceed ``max_memory_gb``."""
    parts = estimate_memory(num_query, num_gallery, dim, k1, k2, workers)
    if parts["total"] > max_memory_gb * (1 << 30):
        largest = max((name for name in parts if name != "total"), key=parts.get)
        raise RerankMemoryError(
            "re-ranking %d queries x %d gallery images (k1=%d, k2=%d) may need up to %.1f GB, over the %.1f GB "
            "budget (largest part: %s, %.1f GB); evaluate without re-ranking, on fewer images, or raise the "
            "budget (--max_memory_gb) if the machine has the memory"
            % (num_query, num_gallery, k1, k2, parts["total"] / 2 ** 30, max_memory_gb, largest,
               parts[largest] / 2 ** 30))
    return parts


def _k_smallest_per_row(row, keys, num_rows, k):
    """``[num_rows, k]``: the k smallest ``keys`` of each row, ascending (entry i belongs to ``row[i]``;
    every row must have at least k)."""
    order = np.argsort(row.astype(np.min_scalar_type(num_rows)), kind="stable")   # radix sort when small
    row, keys = row[order], keys[order]
    counts = np.bincount(row, minlength=num_rows)
    padded = np.full((num_rows, counts.max()), IGNORED, np.int64)
    padded[row, np.arange(len(row)) - np.repeat(np.cumsum(counts) - counts, counts)] = keys
    padded.sort(axis=1)
    return padded[:, :k]


def smallest_k(dist, k, sample_step=8):
    """Column indices of the ``k`` smallest entries of each row, ordered by (distance, column): the first
    ``k`` columns of a stable argsort, without sorting or partitioning whole rows.

    The k-th smallest entry among every ``sample_step``-th column bounds the row's k-th smallest from
    above, so the entries at or below it include the k smallest; only those few (about ``k * sample_step``
    per row) are sorted.
    """
    sample = dist[:, ::sample_step] if dist.shape[1] >= k * sample_step else dist
    bound = np.partition(sample, k - 1, axis=1)[:, k - 1]
    row, col = np.nonzero(dist <= bound[:, None])
    keys = order_keys(dist[row, col], col, dist.shape[1])
    return _k_smallest_per_row(row, keys, len(dist), k) % dist.shape[1]


def _square_blocks(num, k):
    """Contiguous index ranges splitting 0..num-1 into about ``_PAIR_BLOCKS`` blocks of at least
    ``max(_PAIR_BLOCK_MIN, k)`` indices (one block when ``num`` is smaller)."""
    count = max(1, min(_PAIR_BLOCKS, num // max(_PAIR_BLOCK_MIN, k)))
    return np.array_split(np.arange(num), count)


def _copy_query_gallery(out, dist, rows, cols, num_query):
    """Copy the (query row, gallery column) part of the block ``dist`` = contiguous ``rows`` x ``cols``."""
    num_rows = min(rows[-1] + 1, num_query) - rows[0]
    first_col = max(num_query - cols[0], 0)
    if num_rows > 0 and first_col < len(cols):
        out[rows[0]:rows[0] + num_rows, cols[first_col] - num_query:cols[-1] + 1 - num_query] = \
            dist[:num_rows, first_col:]


def _nearest_neighbours(distance, k, num_query, out, workers):
    """The k nearest neighbours of every point, by (distance, index) (a point is its own first, at
    distance 0), and every row's maximum distance, from one pass over the N x N distances; writes the
    query x gallery distances, divided by their row's maximum, into ``out``.

    The matrix is symmetric, so only the square blocks on and above the diagonal are computed (half the
    matmul work), on ``workers`` threads. A row's k-th smallest distance within its own diagonal block
    bounds its true k-th smallest from above, so from every other block only the entries at or below that
    bound are kept as candidates (about k per block), and each row's k nearest are picked from its
    candidates at the end. A row with more than ``_CANDIDATE_CAP * k`` candidates in one block (possible
    only when the data's order puts points far from their neighbours' blocks) keeps just that block's k
    nearest, which bounds the memory.
    """
    num = distance.shape[0]
    blocks = _square_blocks(num, k)
    starts = [block[0] for block in blocks]
    bound = np.empty(num, np.float32)
    block_max = np.zeros((num, len(blocks)), np.float32)
    # per block of rows: (row within the block, sort key) arrays; a key orders by (distance, column)
    found = [[] for _ in blocks]

    def keep_candidates(dist, owner_block, other_block, axis):
        """Candidates in ``dist`` for the points of ``owner_block`` (its rows if axis == 1, else columns)."""
        owners = blocks[owner_block]
        limit = bound[owners][:, None] if axis == 1 else bound[owners][None, :]
        row, col = np.nonzero(dist <= limit)
        owner, other = (row, col) if axis == 1 else (col, row)
        per_owner = np.bincount(owner, minlength=len(owners))
        crowded = np.flatnonzero(per_owner > _CANDIDATE_CAP * k)
        values = dist[row, col]
        if len(crowded):
            spare = per_owner[owner] <= _CANDIDATE_CAP * k
            sub = dist[crowded] if axis == 1 else dist[:, crowded].T
            nearest = smallest_k(sub, k)
            owner = np.concatenate([owner[spare], np.repeat(crowded, k)])
            other = np.concatenate([other[spare], nearest.ravel()])
            values = np.concatenate([values[spare], np.take_along_axis(sub, nearest, axis=1).ravel()])
        found[owner_block].append((owner, order_keys(values, starts[other_block] + other, num)))

    def diagonal(index):
        rows = blocks[index]
        dist = distance.rows(rows, slice(rows[0], rows[-1] + 1))
        dist[np.arange(len(rows)), np.arange(len(rows))] = 0.0     # exactly 0 to itself, as cdist gives
        block_max[rows, index] = dist.max(axis=1)
        nearest = smallest_k(dist, k)
        bound[rows] = dist[np.arange(len(rows)), nearest[:, -1]]
        found[index].append((np.repeat(np.arange(len(rows)), k),
                             order_keys(np.take_along_axis(dist, nearest, axis=1), rows[nearest], num).ravel()))
        _copy_query_gallery(out, dist, rows, rows, num_query)

    def off_diagonal(pair):
        # rows before columns: the transposed part never holds query rows x gallery columns
        rows, cols = blocks[pair[0]], blocks[pair[1]]
        dist = distance.rows(rows, slice(cols[0], cols[-1] + 1))
        block_max[rows, pair[1]] = dist.max(axis=1)
        block_max[cols, pair[0]] = dist.max(axis=0)
        keep_candidates(dist, pair[0], pair[1], axis=1)
        keep_candidates(dist, pair[1], pair[0], axis=0)
        _copy_query_gallery(out, dist, rows, cols, num_query)

    def pick(index):
        local = np.concatenate([owner for owner, _ in found[index]])
        keys = np.concatenate([key for _, key in found[index]])
        return _k_smallest_per_row(local, keys, len(blocks[index]), k) % num

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(diagonal, range(len(blocks))))           # the bounds first
        list(pool.map(off_diagonal, [(i, j) for i in range(len(blocks)) for j in range(i + 1, len(blocks))]))
        neighbours = np.concatenate(list(pool.map(pick, range(len(blocks)))))
    row_max = np.maximum(block_max.max(axis=1), np.finfo(np.float32).tiny)
    out /= row_max[:num_query, None]
    return neighbours, row_max


def _reciprocal(neighbours, k):
    """``[N, k]`` mask: is ``neighbours[i, m]`` a k-reciprocal neighbour of i (i among its k nearest)?"""
    lists = neighbours[:, :k]
    mask = np.empty(lists.shape, bool)
    for s in range(0, len(lists), _RECIPROCAL_BLOCK):
        block = lists[s:s + _RECIPROCAL_BLOCK]
        rows = np.arange(s, s + len(block))
        mask[s:s + len(block)] = (lists[block] == rows[:, None, None]).any(axis=2)
    return mask


def _expansion_sets(neighbours, k, half):
    """``(row, column)`` of every pair ``j in R*(i)``, sorted by row then column (step 3)."""
    num = len(neighbours)
    recip = _reciprocal(neighbours, k)
    recip_half = _reciprocal(neighbours, half)
    sets = np.where(recip, neighbours[:, :k], -1)               # R(i, k1), -1 padded
    half_sets = np.where(recip_half, neighbours[:, :half], -1)  # R(c, k1/2), -1 padded
    half_size = recip_half.sum(axis=1)
    row, slot = np.nonzero(sets >= 0)
    keys = [row * num + sets[row, slot]]
    for s in range(0, num, _RECIPROCAL_BLOCK):
        rows = np.arange(s, min(s + _RECIPROCAL_BLOCK, num))
        candidates = neighbours[rows, :k]                       # [b, k]
        candidate_sets = half_sets[candidates]                  # [b, k, half]
        inside = (candidate_sets[..., None] == sets[rows][:, None, None, :]).any(axis=3) & (candidate_sets >= 0)
        overlap = inside.sum(axis=2)
        # |R(c, k1/2) & R(i, k1)| > 2/3 |R(c, k1/2)|, in integers
        accept = recip[rows] & (3 * overlap > 2 * half_size[candidates])
        take = accept[..., None] & (candidate_sets >= 0)
        keys.append(np.broadcast_to(rows[:, None, None], take.shape)[take] * num + candidate_sets[take])
    keys = np.unique(np.concatenate(keys))
    return keys // num, keys % num


def _weights(distance, rows, cols, row_max):
    """Step 4: ``V`` as a CSR matrix over the expansion sets."""
    num = distance.shape[0]
    dist = distance.pairs(rows, cols).astype(np.float64)
    dist[rows == cols] = 0.0
    weight = np.exp(-dist / row_max[rows])
    weight /= np.bincount(rows, weight, minlength=num)[rows]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=num))])
    return sparse.csr_matrix((weight.astype(np.float32), cols, indptr), shape=(num, num))


def _query_expansion(v, neighbours, k2):
    """Step 5: ``V <- A V`` with ``A[i, j] = 1/k2`` for the k2 nearest neighbours j of i."""
    if k2 == 1:
        return v
    num = v.shape[0]
    average = sparse.csr_matrix((np.full(num * k2, 1.0 / k2, np.float32), neighbours[:, :k2].ravel(),
                                 np.arange(0, num * k2 + 1, k2)), shape=(num, num))
    return (average @ v).tocsr()


def _jaccard_numerator(v, num_query, out):
    """Step 6 numerator ``sum_k min(V[q, k], V[g, k])`` for every query q and gallery g, into ``out``.

    Through V's columns: a pair (q, g) gets a term only from a column k where both rows are non-zero, so
    each non-zero V[q, k] is paired with the gallery non-zeros of column k (CSC) and the minima are summed
    per (q, g) with bincount, a bounded number of pairs at a time.
    """
    num_gallery = v.shape[0] - num_query
    query_part = v[:num_query].tocsr()
    gallery_part = v[num_query:].tocsc()
    q_row = np.repeat(np.arange(num_query), np.diff(query_part.indptr))
    q_col, q_val = query_part.indices, query_part.data
    col_ptr = gallery_part.indptr
    pairs = (col_ptr[q_col + 1] - col_ptr[q_col]).astype(np.int64)
    ends = np.cumsum(pairs)
    start = 0
    while start < len(q_row):
        before = ends[start] - pairs[start]
        stop = min(np.searchsorted(ends, before + _PAIR_BUDGET, side="right"),
                   np.searchsorted(q_row, q_row[start] + _JACCARD_ROWS, side="left"))
        stop = max(stop, start + 1)
        counts = pairs[start:stop]
        first_row = q_row[start]
        span = q_row[stop - 1] - first_row + 1
        where = concat_ranges(col_ptr[q_col[start:stop]], counts)
        minima = np.minimum(np.repeat(q_val[start:stop], counts), gallery_part.data[where])
        flat = np.repeat(q_row[start:stop] - first_row, counts) * num_gallery + gallery_part.indices[where]
        out[first_row:first_row + span] += np.bincount(flat, minima, minlength=span * num_gallery).reshape(
            span, num_gallery)
        start = stop


def k_reciprocal_distance(q_feats, g_feats, k1=DEFAULT_K1, k2=DEFAULT_K2, lambda_value=DEFAULT_LAMBDA,
                          metric="cosine", max_memory_gb=DEFAULT_MAX_MEMORY_GB, workers=None):
    """Re-ranked ``[Q, G]`` float32 distance matrix (Zhong et al. 2017; see the module docstring).

    Raises :class:`RerankMemoryError` before allocating anything large when the estimate of
    :func:`estimate_memory` exceeds ``max_memory_gb``; ValueError on bad parameters.
    """
    if int(k1) != k1 or k1 < 1:
        raise ValueError("k1 must be a positive integer, got %r" % (k1,))
    if int(k2) != k2 or not 1 <= k2 <= k1 + 1:
        raise ValueError("k2 must be an integer in [1, k1 + 1] = [1, %d], got %r" % (k1 + 1, k2))
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError("lambda_value must be in [0, 1], got %r" % (lambda_value,))
    k1, k2 = int(k1), int(k2)
    query = np.asarray(q_feats)
    gallery = np.asarray(g_feats)
    if query.ndim != 2 or gallery.ndim != 2:
        raise ValueError("re-ranking needs 2-D [N, D] query and gallery features, got shapes %s and %s"
                         % (query.shape, gallery.shape))
    num_query, num_gallery = len(query), len(gallery)
    workers = workers or available_cpus()
    check_memory(num_query, num_gallery, query.shape[1], k1, k2, max_memory_gb, workers)
    if query.shape[1] != gallery.shape[1]:
        raise ValueError("query features have dimension %d but gallery features have %d"
                         % (query.shape[1], gallery.shape[1]))
    both = np.concatenate([query, gallery])
    distance = FeatureDistance(both, both, metric, names=("query+gallery features", "query+gallery features"))
    num, k, half, _, _ = _sizes(num_query, num_gallery, k1, k2)

    original = np.empty((num_query, num_gallery), np.float32)
    neighbours, row_max = _nearest_neighbours(distance, k, num_query, original, workers)
    rows, cols = _expansion_sets(neighbours, k, half)
    v = _query_expansion(_weights(distance, rows, cols, row_max), neighbours, k2)
    del rows, cols, neighbours

    overlap = np.zeros((num_query, num_gallery), np.float32)
    _jaccard_numerator(v, num_query, overlap)
    del v
    # dJ = 1 - m / (2 - m); final = (1 - lambda) dJ + lambda d', computed in place on `original`
    np.divide(overlap, 2.0 - overlap, out=overlap)
    np.subtract(1.0, overlap, out=overlap)
    original *= lambda_value
    overlap *= 1.0 - lambda_value
    original += overlap
    return original
