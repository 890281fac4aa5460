"""Gallery search speed with faiss: exact (IndexFlatIP) against IVF (IndexIVFFlat), and IVF's recall.

    python benchmarks/search_speed.py                                  # 10^4, 10^5, 10^6 gallery rows, 128-d
    python benchmarks/search_speed.py --sizes 10000,100000 --dim 256 --nprobe 8,32,128
    python benchmarks/search_speed.py --gallery_feats feats/gallery.npy --query_feats feats/query.npy   # real ones

For each gallery size: random unit vectors (Gaussian, normalised) as gallery and queries, the
``metric_learning.deploy.search.GallerySearch`` index built (IVF: k-means on up to 64 rows per list, nlist =
4 sqrt(N)), then top-10 latency for one query at a time (mean over ``--single_queries``) and for a batch of
100 queries (median over ``--batches``), and IVF's recall@10: the fraction of the exact top 10 that IVF
returns, over ``--recall_queries`` queries.

With ``--gallery_feats`` / ``--query_feats`` (the .npy files infer.py writes, rows L2-normalised) the same is
measured on those embeddings instead of random ones.

Memory: the gallery is N x dim x 4 bytes (10^6 x 128 x 4 B = 512 MB) and each index holds its own copy; the
exact index is freed before the IVF one is built, so 10^6 x 128 peaks near 1.1 GB. Random vectors have no
cluster structure, the hardest case for IVF: real embeddings, grouped by person, reach a given recall with
fewer lists scanned. faiss runs on $OMP_NUM_THREADS threads (importing metric_learning sets it to every core
unless it is set).
"""
import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import metric_learning  # noqa: E402,F401  (thread defaults)
import numpy as np  # noqa: E402

from metric_learning.deploy import search  # noqa: E402
from metric_learning.evaluation import metrics  # noqa: E402

K = 10
BATCH = 100


def parse_list(text, kind):
    return [kind(float(v)) for v in text.split(",") if v.strip()]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="gallery sizes, comma-separated")
    parser.add_argument("--dim", type=int, default=128, help="embedding dimension")
    parser.add_argument("--nprobe", default="8,32,128", help="IVF lists scanned per query, one row each")
    parser.add_argument("--single_queries", type=int, default=200, help="queries timed one at a time")
    parser.add_argument("--batches", type=int, default=5, help="batches of %d queries timed" % BATCH)
    parser.add_argument("--recall_queries", type=int, default=1000, help="queries for IVF recall@%d" % K)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gallery_feats", help="measure on these embeddings (.npy) instead of random ones")
    parser.add_argument("--query_feats", help="queries for --gallery_feats (.npy)")
    args = parser.parse_args(argv)
    if (args.gallery_feats is None) != (args.query_feats is None):
        parser.error("--gallery_feats and --query_feats go together")
    args.sizes, args.nprobe = parse_list(args.sizes, int), parse_list(args.nprobe, int)
    return args


def unit_rows(rng, rows, dim, chunk=1 << 17):
    """Random unit vectors, float32, made in chunks so no float64 copy of a large gallery exists."""
    out = np.empty((rows, dim), np.float32)
    for start in range(0, rows, chunk):
        block = rng.standard_normal((min(chunk, rows - start), dim), dtype=np.float32)
        out[start:start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def latencies(index, queries, args):
    """``(ms per single query, ms per batch of 100)``."""
    singles = queries[:args.single_queries]
    started = time.perf_counter()
    for row in range(len(singles)):
        index.search(singles[row:row + 1], K)
    single_ms = 1000.0 * (time.perf_counter() - started) / len(singles)
    batch_ms = []
    for b in range(args.batches):
        batch = queries[b * BATCH:(b + 1) * BATCH]
        started = time.perf_counter()
        index.search(batch, K)
        batch_ms.append(1000.0 * (time.perf_counter() - started))
    return single_ms, statistics.median(batch_ms)


def galleries(args):
    """``(size, gallery, queries)`` per table block: random unit vectors per --sizes, or the given files."""
    if args.gallery_feats:
        gallery = metrics.l2_normalize(metrics.as_features(np.load(args.gallery_feats), args.gallery_feats))
        queries = metrics.l2_normalize(metrics.as_features(np.load(args.query_feats), args.query_feats))
        if len(queries) < BATCH * args.batches:
            raise SystemExit("--query_feats needs at least %d rows for --batches %d"
                             % (BATCH * args.batches, args.batches))
        yield len(gallery), gallery, queries
        return
    rng = np.random.default_rng(args.seed)
    queries = unit_rows(rng, max(args.single_queries, args.recall_queries, BATCH * args.batches), args.dim)
    for size in args.sizes:
        yield size, unit_rows(rng, size, args.dim), queries


def recall_at_k(found, truth):
    hits = (found[:, :, None] == truth[:, None, :]).any(axis=2).sum()
    return hits / truth.size


def main(argv=None):
    args = parse_args(argv)
    print("%s, top-%d, OMP_NUM_THREADS=%s, %d CPUs, load average %.2f at start"
          % (args.gallery_feats or "random unit vectors, dim %d" % args.dim, K, os.environ.get("OMP_NUM_THREADS"),
             os.cpu_count(), os.getloadavg()[0]))
    print("\n| gallery | index | nlist | nprobe | build s | ms/query (one at a time) | ms per batch of %d | "
          "recall@%d |" % (BATCH, K))
    print("|---|---|---|---|---|---|---|---|")
    for size, gallery, queries in galleries(args):
        started = time.perf_counter()
        exact = search.GallerySearch(gallery, index="exact")
        build = time.perf_counter() - started
        single, batch = latencies(exact, queries, args)
        truth = exact.search(queries[:args.recall_queries], K)[1]
        print("| %s | exact | - | - | %.2f | %.2f | %.1f | 1 |" % (f"{size:,}", build, single, batch), flush=True)
        del exact
        started = time.perf_counter()
        ivf = search.GallerySearch(gallery, index="ivf", seed=args.seed)
        build = time.perf_counter() - started
        for nprobe in args.nprobe:
            if nprobe > ivf.nlist:
                continue
            ivf.nprobe = nprobe
            single, batch = latencies(ivf, queries, args)
            recall = recall_at_k(ivf.search(queries[:args.recall_queries], K)[1], truth)
            print("| %s | ivf | %d | %d | %.2f | %.3f | %.2f | %.3f |"
                  % (f"{size:,}", ivf.nlist, nprobe, build, single, batch, recall), flush=True)
        del ivf, gallery
    print("\nload average %.2f at the end" % os.getloadavg()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
