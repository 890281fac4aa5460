"""Search a gallery of L2-normalised embeddings with faiss, and draw the results as a picture.

:class:`GallerySearch` ranks gallery rows by inner product (= cosine similarity on unit vectors):

- ``exact``: ``faiss.IndexFlatIP``, brute force, the same ranking as ``query @ gallery.T``;
- ``ivf``: ``faiss.IndexIVFFlat``, for large galleries: k-means splits the gallery into ``nlist`` lists
  (default ``4 * sqrt(N)``, faiss's usual starting point) and a query scans only the ``nprobe`` lists
  whose centroids are nearest. Faster, approximate; ``nprobe = nlist`` scans everything and is exact.
- ``auto`` (default): ``ivf`` from ``ivf_threshold`` gallery rows on (100,000), ``exact`` below.

:func:`save_topk_grid` writes a PNG: one row per query, the query first, then its top-k gallery images,
framed green when the gallery image has the query's person id, red when it does not, unframed when ids are
unknown. The ranking is the raw one: a gallery image of the same person from the query's own camera is
shown (and framed green), although the Market-1501 protocol ignores it when scoring.
"""
import os

import cv2
import numpy as np

from metric_learning.data.images import BadImageError, read_image_bgr
from metric_learning.evaluation import metrics

INDEX_KINDS = ("auto", "exact", "ivf")
IVF_THRESHOLD = 100_000
DEFAULT_NPROBE = 32
#: k-means training sample per list: faiss wants at least 39 per centroid and uses at most 256
TRAIN_POINTS_PER_LIST = 64
NORM_TOLERANCE = 1e-3


def default_nlist(num_gallery):
    return max(1, int(round(4 * np.sqrt(num_gallery))))


class GallerySearch:
    """Top-k inner-product search over ``gallery_feats`` ``[N, D]`` (rows L2-normalised).

    ``index``: ``auto``, ``exact`` or ``ivf`` (see the module docstring); ``nlist`` and ``nprobe`` (default
    :data:`DEFAULT_NPROBE`, at most ``nlist``) apply to ``ivf``; ``seed`` picks the k-means training sample.
    ``search(query_feats, k)`` returns ``(scores float32 [Q, k], indices int64 [Q, k])``, best first, whichever
    index is used. Queries need not be normalised: scaling a query scales its scores, not its ranking.
    """

    def __init__(self, gallery_feats, index="auto", nlist=None, nprobe=None, ivf_threshold=IVF_THRESHOLD, seed=0):
        import faiss

        if index not in INDEX_KINDS:
            raise ValueError("index must be one of %s, got %r" % (", ".join(INDEX_KINDS), index))
        feats = metrics.as_features(gallery_feats, "gallery features")
        norms = np.linalg.norm(feats, axis=1)
        off = np.abs(norms - 1.0) > NORM_TOLERANCE
        if off.any():
            raise ValueError("gallery features must be L2-normalised (inner product = cosine); %d of %d rows are "
                             "not (row %d has norm %.4g): use metrics.l2_normalize or infer.py --normalize True"
                             % (off.sum(), len(feats), np.flatnonzero(off)[0], norms[off][0]))
        self.kind = index if index != "auto" else ("ivf" if len(feats) >= ivf_threshold else "exact")
        self.dim = feats.shape[1]
        if self.kind == "exact":
            self.nlist = None
            self.index = faiss.IndexFlatIP(self.dim)
        else:
            self.nlist = int(nlist) if nlist else default_nlist(len(feats))
            if not 1 <= self.nlist <= len(feats):
                raise ValueError("nlist must be between 1 and the gallery size %d, got %d" % (len(feats), self.nlist))
            self._quantizer = faiss.IndexFlatIP(self.dim)     # the IVF index uses it; keep it alive
            self.index = faiss.IndexIVFFlat(self._quantizer, self.dim, self.nlist, faiss.METRIC_INNER_PRODUCT)
            sample = min(len(feats), TRAIN_POINTS_PER_LIST * self.nlist)
            rows = np.sort(np.random.default_rng(seed).choice(len(feats), sample, replace=False))
            self.index.train(feats[rows])
            self.nprobe = min(DEFAULT_NPROBE, self.nlist) if nprobe is None else nprobe
        self.index.add(feats)

    @property
    def size(self):
        return int(self.index.ntotal)

    @property
    def nprobe(self):
        return int(self.index.nprobe) if self.kind == "ivf" else None

    @nprobe.setter
    def nprobe(self, value):
        if self.kind != "ivf":
            raise ValueError("nprobe applies to the ivf index; this one is %s" % self.kind)
        if not 1 <= int(value) <= self.nlist:
            raise ValueError("nprobe must be between 1 and nlist (%d), got %r" % (self.nlist, value))
        self.index.nprobe = int(value)

    def search(self, query_feats, k):
        """``(scores [Q, k], indices [Q, k])`` of the ``k`` best gallery rows for each query row."""
        queries = metrics.as_features(np.atleast_2d(query_feats), "query features")
        if queries.shape[1] != self.dim:
            raise ValueError("query features have %d dimensions but the gallery has %d"
                             % (queries.shape[1], self.dim))
        if not 1 <= int(k) <= self.size:
            raise ValueError("k must be between 1 and the gallery size (%d images), got %r" % (self.size, k))
        scores, indices = self.index.search(queries, int(k))
        return scores, indices.astype(np.int64)


SAME_ID_BGR = (0, 255, 0)
OTHER_ID_BGR = (0, 0, 255)
BACKGROUND_BGR = (255, 255, 255)
CAPTION_HEIGHT = 14
QUERY_GAP = 16       # pixels between the query and its first result
CELL_SPACING = 4     # pixels between results


def _read(image, what):
    if isinstance(image, np.ndarray):
        return image
    try:
        return read_image_bgr(image)
    except BadImageError as exc:
        raise ValueError("cannot read %s image: %s" % (what, exc)) from None


def grid_layout(num_queries, k, cell_hw=(128, 64), border=4):
    """``(height, width, cell_x)`` of the grid: ``cell_x[j]`` is the left edge of column j's frame (0 = query).

    A cell is the image plus ``border`` pixels on every side; under each row is a caption strip.
    """
    cell_height, cell_width = cell_hw[0] + 2 * border, cell_hw[1] + 2 * border
    cell_x = [0] + [cell_width + QUERY_GAP + j * (cell_width + CELL_SPACING) for j in range(k)]
    return num_queries * (cell_height + CAPTION_HEIGHT), cell_x[-1] + cell_width, cell_x


def save_topk_grid(path, query_images, gallery_images, indices, query_pids=None, gallery_pids=None, scores=None,
                   cell_hw=(128, 64), border=4):
    """Write the top-k picture (PNG, see the module docstring) to ``path``; returns its ``(height, width)``.

    ``query_images``: one path or BGR image per query; ``gallery_images``: paths or images indexed by
    ``indices`` ``[Q, k]`` (only the shown ones are read). ``query_pids`` / ``gallery_pids`` (both or
    neither) frame the results; ``scores`` ``[Q, k]`` are printed under them.
    """
    indices = np.asarray(indices, np.int64).reshape(len(query_images), -1)
    if (query_pids is None) != (gallery_pids is None):
        raise ValueError("give both query_pids and gallery_pids to frame the results by id, or neither")
    height, width, cell_x = grid_layout(len(query_images), indices.shape[1], cell_hw, border)
    canvas = np.full((height, width, 3), BACKGROUND_BGR, np.uint8)
    row_height = cell_hw[0] + 2 * border + CAPTION_HEIGHT
    for q, query in enumerate(query_images):
        top = q * row_height
        cells = [(_read(query, "query"), None, "query" if query_pids is None else "query %d" % query_pids[q])]
        for j, g in enumerate(indices[q].tolist()):
            same = None if query_pids is None else gallery_pids[g] == query_pids[q]
            caption = "%d" % (j + 1) + ("" if scores is None else " %.3f" % scores[q][j])
            cells.append((_read(gallery_images[g], "gallery"), same, caption))
        for left, (image, same, caption) in zip(cell_x, cells):
            if same is not None:
                canvas[top:top + cell_hw[0] + 2 * border, left:left + cell_hw[1] + 2 * border] = \
                    SAME_ID_BGR if same else OTHER_ID_BGR
            canvas[top + border:top + border + cell_hw[0], left + border:left + border + cell_hw[1]] = cv2.resize(
                image, (cell_hw[1], cell_hw[0]), interpolation=cv2.INTER_AREA)
            cv2.putText(canvas, caption, (left + 1, top + row_height - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0),
                        1, cv2.LINE_AA)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not cv2.imwrite(str(path), canvas):
        raise ValueError("could not write the grid to %s (use a .png or .jpg name in a writable folder)" % path)
    return height, width
