"""How fast is the evaluation? Market-1501-sized random features, timed against the older ways.

    python benchmarks/eval_speed.py                      # both label structures when Market-1501 is present
    python benchmarks/eval_speed.py --labels synthetic --loop_queries 200

Features are random float32 (3,368 query x 19,732 gallery, 512-d by default; ``--signal`` adds an identity
component). Labels come either from a synthetic structure shaped like Market-1501 (750 ids, 6 cameras,
2,798 distractors, 3,819 junk) or from the real Market-1501 file names (``--labels market``; read from
$MARKET1501_ROOT or ../shared/datasets/Market-1501-v15.09.15, names only, no image is opened).

Rows of the table:

- this code: ``metrics.evaluate_ranking`` (features in, CMC + mAP + mINP out; distances included);
- full argsort: the distance matrix, ``np.argsort`` of every row, then a per-query pass over the sorted
  rows (the python ``eval_func`` of torchreid / fast-reid);
- plain per-query loop: per query a matrix-vector product, a full argsort and ``np.in1d`` masks (the
  classic baselines' ``evaluate()``); run on ``--loop_queries`` queries and extrapolated (marked ``~``);
- k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3) of the 3,368 queries and the 15,913 gallery images
  left after dropping junk, followed by the evaluation.

Every step runs in a fresh process, so "peak RSS" is that whole process's high-water mark (Python, numpy,
the features and the step). "numpy peak" is tracemalloc's peak of the allocations made during the step.
All three evaluations must agree on mAP to 1e-6 (checked; they differ only in float rounding and ties).
"""
import argparse
import multiprocessing
import os
import resource
import sys
import time
import tracemalloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import metric_learning  # noqa: E402,F401  (CPU thread defaults)
import numpy as np  # noqa: E402

MARKET_DEFAULT = os.path.join(ROOT, "..", "shared", "datasets", "Market-1501-v15.09.15")
NUM_QUERY, NUM_GALLERY = 3368, 19732


def market_root():
    root = os.environ.get("MARKET1501_ROOT") or MARKET_DEFAULT
    return root if os.path.isdir(os.path.join(root, "query")) else None


def synthetic_labels(rng):
    """Market-1501-shaped ids and cameras: 750 test ids, 6 cameras, 3,368 queries (every id at least once),
    a gallery of 13,115 identity images (~17.5 per id over random cameras), 2,798 distractors, 3,819 junk."""
    ids = np.arange(1, 751)
    q_pids = np.concatenate([ids, rng.choice(ids, NUM_QUERY - len(ids))])
    q_cams = rng.integers(0, 6, NUM_QUERY)
    identity_images = NUM_GALLERY - 2798 - 3819
    g_pids = np.concatenate([np.repeat(ids, 2), rng.choice(ids, identity_images - 2 * len(ids)),
                             np.zeros(2798, int), -np.ones(3819, int)])
    g_cams = rng.integers(0, 6, NUM_GALLERY)
    return q_pids, q_cams, g_pids, g_cams


def real_labels(root):
    from metric_learning.data import market

    out = []
    for folder in ("query", "bounding_box_test"):
        names = market.list_images(os.path.join(root, folder))
        parsed = np.array([market.parse_name(n) for n in names])
        out += [parsed[:, 0], parsed[:, 1]]
    return out


def make_data(labels, dim, signal, seed=0):
    rng = np.random.default_rng(seed)
    q_pids, q_cams, g_pids, g_cams = synthetic_labels(rng) if labels == "synthetic" else real_labels(market_root())
    centers = rng.standard_normal((int(max(q_pids.max(), g_pids.max())) + 2, dim), dtype=np.float32)
    q = rng.standard_normal((len(q_pids), dim), dtype=np.float32) + signal * centers[q_pids + 1]
    g = rng.standard_normal((len(g_pids), dim), dtype=np.float32) + signal * centers[g_pids + 1]
    return q, g, q_pids, q_cams, g_pids, g_cams


def cosine_distmat(q, g):
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    return 1.0 - qn @ gn.T


def full_argsort_eval(distmat, q_pids, g_pids, q_cams, g_cams):
    """Sort every row, then walk the sorted rows query by query (torchreid / fast-reid python eval_func)."""
    indices = np.argsort(distmat, axis=1)
    matches = g_pids[indices] == q_pids[:, None]
    aps, first = [], []
    for i in range(len(q_pids)):
        order = indices[i]
        keep = ~(((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i])) | (g_pids[order] == -1))
        hits = matches[i][keep]
        if not hits.any():
            continue
        cum = hits.cumsum()
        first.append(np.argmax(hits))
        aps.append(np.sum(cum[hits] / (np.flatnonzero(hits) + 1.0)) / hits.sum())
    return float(np.mean(aps)), float(np.mean(np.array(first) < 1))


def plain_loop_eval(q, g, q_pids, g_pids, q_cams, g_cams):
    """Per query: one matrix-vector product, a full argsort and set operations (the classic evaluate())."""
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    junk_pid = np.argwhere(g_pids == -1).ravel()
    aps, first = [], []
    for i in range(len(q)):
        score = gn @ (q[i] / np.linalg.norm(q[i]))
        index = np.argsort(score)[::-1]
        same_id = np.argwhere(g_pids == q_pids[i]).ravel()
        same_cam = np.argwhere(g_cams == q_cams[i]).ravel()
        good = np.setdiff1d(same_id, same_cam, assume_unique=True)
        junk = np.append(np.intersect1d(same_id, same_cam), junk_pid)
        if len(good) == 0:
            continue
        index = index[np.in1d(index, junk, invert=True)]
        hit_rows = np.argwhere(np.in1d(index, good)).ravel()
        first.append(hit_rows[0])
        aps.append(np.mean((np.arange(len(hit_rows)) + 1) / (hit_rows + 1.0)))
    return float(np.mean(aps)), float(np.mean(np.array(first) < 1))


def run_step(step, labels, dim, signal, loop_queries):
    """One measured step in this (fresh) process: returns time, memory and the metrics it computed."""
    from metric_learning.evaluation import evaluator, metrics, rerank

    q, g, q_pids, q_cams, g_pids, g_cams = make_data(labels, dim, signal)
    out = {}
    tracemalloc.start()
    start, cpu_start = time.perf_counter(), time.process_time()
    if step == "ours":
        result = metrics.evaluate_ranking((q, g), q_pids, g_pids, q_cams, g_cams)
        out.update(mAP=result["mAP"], rank1=result["rank1"])
    elif step == "ours_subset":
        result = metrics.evaluate_ranking((q[:loop_queries], g), q_pids[:loop_queries], g_pids,
                                          q_cams[:loop_queries], g_cams)
        out.update(mAP=result["mAP"], rank1=result["rank1"])
    elif step == "argsort":
        out["mAP"], out["rank1"] = full_argsort_eval(cosine_distmat(q, g), q_pids, g_pids, q_cams, g_cams)
    elif step == "loop":
        n = loop_queries
        out["mAP"], out["rank1"] = plain_loop_eval(q[:n], g, q_pids[:n], g_pids, q_cams[:n], g_cams)
    elif step == "rerank":
        result = evaluator.evaluate_features(q, g, q_pids, g_pids, q_cams, g_cams, rerank=True)
        out.update(mAP=result["mAP"], rank1=result["rank1"])
        keep = g_pids != -1
        out["estimate"] = rerank.estimate_memory(len(q), int(keep.sum()), q.shape[1])["total"]
        out["num"] = len(q) + int(keep.sum())
    out["seconds"] = time.perf_counter() - start
    out["cpu_seconds"] = time.process_time() - cpu_start
    out["numpy_peak"] = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    out["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out["num_query"], out["num_gallery"] = len(q), len(g)
    return out


def in_fresh_process(*args):
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(run_step, args)


def gb(num_bytes):
    return "%.2f" % (num_bytes / 2 ** 30)


def benchmark(labels, args):
    print("\n== labels: %s (%s)" % (labels, "real Market-1501 ids/cameras from the file names" if labels == "market"
                                    else "synthetic, Market-1501-shaped"), flush=True)
    load_at_start = os.getloadavg()[0]
    ours = min((in_fresh_process("ours", labels, args.dim, args.signal, args.loop_queries)
                for _ in range(args.repeat)), key=lambda r: r["seconds"])
    argsort = in_fresh_process("argsort", labels, args.dim, args.signal, args.loop_queries)
    loop = in_fresh_process("loop", labels, args.dim, args.signal, args.loop_queries)
    subset = in_fresh_process("ours_subset", labels, args.dim, args.signal, args.loop_queries)
    reranked = in_fresh_process("rerank", labels, args.dim, args.signal, args.loop_queries)
    # the others compute distances with other float32 roundings and sort ties arbitrarily: agree to 1e-6
    assert abs(ours["mAP"] - argsort["mAP"]) < 1e-6 and abs(ours["rank1"] - argsort["rank1"]) < 1e-6, (ours, argsort)
    assert abs(subset["mAP"] - loop["mAP"]) < 1e-6, (subset, loop)
    scale = ours["num_query"] / args.loop_queries
    print("%d queries x %d gallery, %d-d float32 features%s; %d CPUs, 1-minute load average %.1f at start, "
          "%.1f at end (other work on the machine slows every row)"
          % (ours["num_query"], ours["num_gallery"], args.dim,
             "" if not args.signal else " (identity signal %.2f)" % args.signal,
             len(os.sched_getaffinity(0)), load_at_start, os.getloadavg()[0]))
    rows = [
        ("CMC + mAP + mINP, this code (best of %d)" % args.repeat, ours, 1.0, ""),
        ("full argsort + per-query pass (torchreid/fast-reid)", argsort, 1.0, ""),
        ("plain per-query loop (classic evaluate())", loop, scale, "~"),
        ("k-reciprocal re-ranking + evaluation", reranked, 1.0, ""),
    ]
    header = "%-53s %9s %8s %13s %10s %13s" % ("step", "time (s)", "CPU (s)", "peak RSS (GB)", "numpy (GB)",
                                               "time vs ours")
    print(header + "\n" + "-" * len(header))
    for name, result, factor, mark in rows:
        print("%-53s %9s %8s %13s %10s %12.1fx" % (
            name, mark + "%.2f" % (factor * result["seconds"]), mark + "%.2f" % (factor * result["cpu_seconds"]),
            gb(result["peak_rss"]), gb(result["numpy_peak"]), factor * result["seconds"] / ours["seconds"]))
    print("~ plain loop timed on the first %d queries (%.2f s) and scaled to %d; its memory is for those queries."
          % (args.loop_queries, loop["seconds"], ours["num_query"]))
    print("CPU (s) is the process's CPU time (all threads): unlike the wall time it hardly changes with the load.")
    print("re-ranking: %d images (junk dropped), memory estimate (upper bound) %s GB, budget 4 GB; "
          "mAP %.4f -> %.4f after re-ranking" % (reranked["num"], gb(reranked["estimate"]), ours["mAP"],
                                                  reranked["mAP"]))
    print("evaluations agree: mAP %.6f, Rank-1 %.6f (this code) vs %.6f, %.6f (full argsort)"
          % (ours["mAP"], ours["rank1"], argsort["mAP"], argsort["rank1"]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels", choices=["synthetic", "market", "both"], default=None,
                        help="label structure (default: both when Market-1501 is found, else synthetic)")
    parser.add_argument("--dim", type=int, default=512, help="feature dimension")
    parser.add_argument("--signal", type=float, default=0.0, help="weight of a per-identity feature component")
    parser.add_argument("--loop_queries", type=int, default=300, help="queries timed for the plain loop")
    parser.add_argument("--repeat", type=int, default=3, help="runs of this code's evaluation (best is shown)")
    args = parser.parse_args(argv)
    labels = args.labels or ("both" if market_root() else "synthetic")
    if labels in ("market", "both") and not market_root():
        parser.error("Market-1501 not found: set MARKET1501_ROOT (only the file names are read)")
    for name in (["synthetic", "market"] if labels == "both" else [labels]):
        benchmark(name, args)


if __name__ == "__main__":
    main()
