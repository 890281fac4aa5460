"""Evaluate an embedding model: extract features, then score them with :mod:`metric_learning.evaluation.metrics`
(and optionally :mod:`metric_learning.evaluation.rerank`).

An *embedder* is any callable ``embed(batch) -> [N, D]`` taking an NCHW float32 numpy batch:

- :class:`LayerEmbedder` wraps a ``paddle.nn.Layer`` (a ReIDNet being trained or loaded from a checkpoint);
- :class:`metric_learning.deploy.export.PredictorEmbedder` runs an exported Paddle inference model;
- anything else (ONNX Runtime, another framework) plugs in the same way. Or skip extraction altogether and
  hand precomputed features to :func:`evaluate_features`: every model is then measured by the same code.

Images go through the evaluation transform (resize + ImageNet normalisation); ``flip=True`` averages the
embeddings of each image and its horizontal mirror.
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from metric_learning.data import market, transforms
from metric_learning.evaluation import metrics
from metric_learning.evaluation import rerank as reranking
from metric_learning.progress import Progress

DEFAULT_BATCH_SIZE = 64


class LayerEmbedder:
    """``embed(batch)`` for a ``paddle.nn.Layer`` whose ``net(x)`` returns ``[N, D]``; puts it in eval mode."""

    def __init__(self, net):
        self.net = net
        net.eval()

    def __call__(self, batch):
        import paddle  # here: scoring precomputed features (eval.py, search_gallery.py) never loads Paddle

        with paddle.no_grad():
            return self.net(paddle.to_tensor(np.ascontiguousarray(batch, dtype=np.float32))).numpy()


def eval_transform(image_shape):
    """Resize to ``image_shape`` (C, H, W) and normalise as in training (ImageNet mean/std)."""
    return transforms.build_transforms(image_shape, train=False)


def _prefetched_batches(dataset, batch_size):
    """Stacked image batches in order; the next batch is decoded on a thread while the model runs."""
    def load(indices):
        return np.stack([dataset[i][0] for i in indices])

    chunks = [range(s, min(s + batch_size, len(dataset))) for s in range(0, len(dataset), batch_size)]
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load, chunks[0])
        for chunk in chunks[1:]:
            batch, pending = pending.result(), pool.submit(load, chunk)
            yield batch
        yield pending.result()


def extract_features(embed, paths, image_shape, batch_size=DEFAULT_BATCH_SIZE, flip=False, transform=None, log=None):
    """float32 ``[len(paths), D]`` embeddings of the image files ``paths``, in order.

    ``embed``: an embedder (see the module docstring) or a ``paddle.nn.Layer``. ``flip`` averages each
    embedding with that of the mirrored image. Progress: a bar on a terminal or in a notebook, else
    ``log(message)`` gets a line every ~10% (:class:`metric_learning.progress.Progress`).
    """
    from metric_learning.data.datasets import ImageDataset  # imports Paddle; see LayerEmbedder

    if not callable(embed):
        raise TypeError("embed must be callable (an embedder or a paddle.nn.Layer), got %r" % type(embed).__name__)
    if hasattr(embed, "parameters") and hasattr(embed, "eval"):    # a paddle.nn.Layer
        embed = LayerEmbedder(embed)
    if int(batch_size) < 1:
        raise ValueError("--test_batch_size must be positive, got %r" % batch_size)
    dataset = ImageDataset(paths, np.zeros(len(paths), np.int64), transform or eval_transform(image_shape))
    feats = []
    with Progress(len(dataset), "embedded", unit="images", log=log) as progress:
        for batch in _prefetched_batches(dataset, int(batch_size)):
            out = _embedding(embed, batch)
            if flip:
                out = (out + _embedding(embed, batch[:, :, :, ::-1])) / 2.0
            feats.append(out)
            progress.update(len(batch))
    return np.concatenate(feats)


def _embedding(embed, batch):
    out = np.asarray(embed(np.ascontiguousarray(batch)), dtype=np.float32)
    if out.ndim != 2 or len(out) != len(batch):
        raise ValueError("the model returned shape %s for a batch of %d images; expected [%d, D]"
                         % (out.shape, len(batch), len(batch)))
    return out


def evaluate_features(q_feats, g_feats, q_pids, g_pids, q_camids=None, g_camids=None, metric="cosine",
                      ranks=metrics.DEFAULT_RANKS, per_camera=False, rerank=False, k1=reranking.DEFAULT_K1,
                      k2=reranking.DEFAULT_K2, lambda_value=reranking.DEFAULT_LAMBDA,
                      max_memory_gb=reranking.DEFAULT_MAX_MEMORY_GB, junk_pids=metrics.JUNK_PIDS):
    """Rank-k / mAP / mINP of query features against gallery features (see
    :func:`metric_learning.evaluation.metrics.evaluate_ranking`), optionally after k-reciprocal re-ranking.

    Re-ranking first drops the junk gallery images: they are never scored, and leaving them out keeps
    them from shaping anyone's neighbourhood (and Market-1501's problem at 3,368 + 15,913 images).
    """
    q_feats = metrics.as_features(q_feats, "query features")
    g_feats = metrics.as_features(g_feats, "gallery features")
    if rerank:
        g_pids = np.asarray(g_pids)
        keep = ~np.isin(g_pids, list(junk_pids))
        g_camids = None if g_camids is None else np.asarray(g_camids)[keep]
        g_feats, g_pids = g_feats[keep], g_pids[keep]
        scores = reranking.k_reciprocal_distance(q_feats, g_feats, k1, k2, lambda_value, metric, max_memory_gb)
    else:
        scores = (q_feats, g_feats)
    result = metrics.evaluate_ranking(scores, q_pids, g_pids, q_camids, g_camids, ranks=ranks, metric=metric,
                                      junk_pids=junk_pids, per_camera=per_camera)
    result["metric"] = metric
    result["rerank"] = {"k1": k1, "k2": k2, "lambda_value": lambda_value} if rerank else None
    return result


def labels_of(samples):
    """``(pids, camids)`` int64 arrays of :class:`~metric_learning.data.market.ReIDSample` s."""
    return (np.array([s.pid for s in samples], np.int64).reshape(-1),
            np.array([s.camid for s in samples], np.int64).reshape(-1))


def evaluate_protocol(embed, protocol, image_shape, batch_size=DEFAULT_BATCH_SIZE, flip=False, transform=None,
                      log=None, return_features=False, **options):
    """Embed ``protocol.query`` and ``protocol.gallery`` (lists of ReIDSample) and evaluate them.

    ``options`` go to :func:`evaluate_features`. With ``return_features`` returns
    ``(result, q_feats, g_feats)``.
    """
    features = []
    for name, samples in (("query", protocol.query), ("gallery", protocol.gallery)):
        if not samples:
            raise ValueError("the %s set is empty" % name)
        if log:
            log("extracting %s features (%d images)" % (name, len(samples)))
        features.append(extract_features(embed, [s.path for s in samples], image_shape, batch_size, flip, transform,
                                         log=log))
    (q_pids, q_camids), (g_pids, g_camids) = labels_of(protocol.query), labels_of(protocol.gallery)
    result = evaluate_features(features[0], features[1], q_pids, g_pids, q_camids, g_camids, **options)
    return (result, features[0], features[1]) if return_features else result


def recall_summary(feats, labels, ks=(1,), metric="cosine"):
    """Leave-one-out Recall@K as ``{'recall@1': .., ..., 'test_recall': Recall@1, 'num_images': N}``."""
    recall = metrics.recall_at_k(feats, labels, ks=tuple(ks) + (1,), metric=metric)
    summary = {"recall@%d" % k: value for k, value in recall.items()}
    summary["test_recall"] = recall[1]
    summary["num_images"] = len(feats)
    summary["metric"] = metric
    return summary


def evaluate_recall(embed, paths, labels, image_shape, batch_size=DEFAULT_BATCH_SIZE, flip=False, ks=(1,),
                    metric="cosine", transform=None, log=None):
    """The classic metric: leave-one-out Recall@K of the images ``paths`` with class ``labels``."""
    if len(paths) != len(labels):
        raise ValueError("got %d test images but %d labels" % (len(paths), len(labels)))
    feats = extract_features(embed, paths, image_shape, batch_size, flip, transform, log=log)
    return recall_summary(feats, labels, ks, metric)


def read_name_list(list_path):
    """Image file names, one per line (blank lines skipped), of a precomputed-features file."""
    with open(list_path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise ValueError("%s lists no image names (expected one file name per line)" % list_path)
    return names


def load_feature_set(feats_path, list_path, pattern="market1501"):
    """``(feats, pids, camids)`` from a ``.npy`` feature matrix and its name list (ids/cameras parsed from
    the names with :func:`metric_learning.data.market.parse_name`). Row i of the matrix is line i of the list."""
    if not os.path.isfile(feats_path):
        raise FileNotFoundError("feature file %s does not exist" % feats_path)
    try:
        feats = np.load(feats_path, allow_pickle=False)
    except ValueError as exc:
        raise ValueError("%s is not a readable .npy array (%s)" % (feats_path, exc)) from None
    feats = metrics.as_features(feats, feats_path)
    names = read_name_list(list_path)
    if len(names) != len(feats):
        raise ValueError("%s has %d rows but %s lists %d names; they must be the same images in the same order"
                         % (feats_path, len(feats), list_path, len(names)))
    regex = market.compile_pattern(pattern)
    pids, camids = np.empty(len(names), np.int64), np.empty(len(names), np.int64)
    for line, name in enumerate(names):
        try:
            pids[line], camids[line] = market.parse_name(name, regex)
        except ValueError as exc:
            raise ValueError("%s line %d: %s (set --name_pattern)" % (list_path, line + 1, exc)) from None
    return feats, pids, camids


def save_feature_set(directory, name, feats, names):
    """Write ``<name>.npy`` (float32 rows) and ``<name>.txt`` (``names``, one per line, in row order), the pair
    :func:`load_feature_set` reads back; return the path without extension."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    np.save(path + ".npy", np.asarray(feats, np.float32))
    with open(path + ".txt", "w", encoding="utf-8") as f:
        f.writelines(n + "\n" for n in names)
    return path


def evaluate_feature_files(query_feats, query_list, gallery_feats, gallery_list, pattern="market1501", **scoring):
    """:func:`evaluate_features` on two saved feature sets (:func:`save_feature_set`, or any model's features
    with their file names); ``scoring``: its metric / ranks / re-ranking options."""
    q_feats, q_pids, q_camids = load_feature_set(query_feats, query_list, pattern)
    g_feats, g_pids, g_camids = load_feature_set(gallery_feats, gallery_list, pattern)
    return evaluate_features(q_feats, g_feats, q_pids, g_pids, q_camids, g_camids, **scoring)
