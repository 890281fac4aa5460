"""The speed/accuracy frontier of exported models against the peer, measured in one run: a table and a plot.

    python benchmarks/pareto.py \\
        --model output/export_osnet_ft/reid.onnx output/export_osnet_ft/market1501.json \\
        --model output/export_mnv2/reid.onnx output/export_mnv2/market1501.json \\
        --peer OSNet_x0_25 --peer_weights ../shared/weights/osnet_x0_25_market1501.pth \\
        --peer_eval output/osnet_x0_25_market1501_eval.json --output output/pareto

Each ``--model EXPORT EVAL_JSON`` is an exported model (``<prefix>.onnx`` runs in ONNX Runtime, a Paddle
export in Paddle Inference, as ``embedders.load_embedder`` picks) and the ``eval.py --json`` file of its Market-1501
evaluation. Its crops/s are measured now, at the model's own input size (from its ``.reid.json``), on a ready
NCHW float32 batch (cropping and preprocessing not timed), for every ``--batches`` size, with ``--threads``.
The speed of one model varies by a fifth or more from one timing to the next on a shared 2-core machine, so every
model (the peer's too) is timed in each of ``--rounds`` rounds, in turn, and the table gives the median: a slow
spell of the machine then costs every model a round instead of costing one model its only timing. The rounds'
values at the ranking batch are listed in the last column.

The peer is measured in the same run, as its users deploy it (``benchmarks/torchreid_peer.py``): torchreid's
network in PyTorch eager and its ``torch.onnx.export`` in ONNX Runtime (``--peer`` + ``--peer_weights``, needs
torch, torchreid and onnx), or only an ONNX file of it (``--peer_onnx``). Its accuracy is ``--peer_eval``: our
``eval.py`` on the converted peer, which gives torchreid's own features (the OSNet parity test).

Writes ``<output>/pareto.md`` (the table; ``*`` marks the frontier: no other point is both faster and more
accurate) and ``<output>/pareto.png`` (mAP against crops/s at the largest batch, log scale, peer points marked).
The last line printed is ``best: <model> mAP=<x> crops_per_s=<y> peer_ort_crops_per_s=<z> speedup=<y/z>`` for
the fastest model whose mAP is at least the peer's (``best: none`` and the reason when there is none).
"""
import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "benchmarks")):
    if path not in sys.path:
        sys.path.insert(0, path)

PEER_ORT = "ONNX Runtime"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs=2, action="append", default=[], metavar=("EXPORT", "EVAL_JSON"),
                        help="an exported model and its eval.py --json file; repeat for each model")
    parser.add_argument("--peer", default=None, help="torchreid OSNet width measured as the peer, e.g. OSNet_x0_25")
    parser.add_argument("--peer_weights", default=None, help="the peer's torchreid .pth (with --peer)")
    parser.add_argument("--peer_onnx", default=None, help="an ONNX export of the peer (instead of --peer)")
    parser.add_argument("--peer_size", default="256x128", help="the peer's input HxW")
    parser.add_argument("--peer_eval", required=True, help="eval.py --json of the peer on Market-1501")
    parser.add_argument("--batches", default="1,32", help="comma-separated batch sizes; the largest ranks models")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for every runtime")
    parser.add_argument("--min_seconds", type=float, default=3.0, help="time each cell for at least this long")
    parser.add_argument("--min_batches", type=int, default=3, help="and over at least this many batches")
    parser.add_argument("--rounds", type=int, default=3,
                        help="time every model this many times, in turn, and report the median")
    parser.add_argument("--output", required=True, help="directory for pareto.md and pareto.png")
    args = parser.parse_args(argv)
    if not args.model:
        parser.error("give at least one --model EXPORT EVAL_JSON")
    if (args.peer is None) == (args.peer_onnx is None):
        parser.error("give the peer as --peer (torchreid, measured in PyTorch and ONNX Runtime) or --peer_onnx")
    if args.peer:
        from torchreid_peer import INSTALL_HINT, peer_available
        if not peer_available() or importlib.util.find_spec("onnx") is None:
            parser.error("--peer needs torch, torchreid and onnx: %s && pip install onnx==1.17.0" % INSTALL_HINT)
    files = [("--model", path) for pair in args.model for path in pair] + [("--peer_eval", args.peer_eval)] \
        + [(flag, path) for flag, path in (("--peer_weights", args.peer_weights), ("--peer_onnx", args.peer_onnx))
           if path]
    for flag, path in files:
        if not os.path.exists(path):
            parser.error("%s: no such file: %s" % (flag, path))
    if importlib.util.find_spec("matplotlib") is None:
        parser.error("the plot needs matplotlib (pinned in requirements.txt)")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1, got %d" % args.rounds)
    args.batches = sorted(int(b) for b in args.batches.split(",") if b)
    args.peer_size = tuple(int(v) for v in args.peer_size.lower().split("x"))
    args.evaluations = {path: read_evaluation(path, parser) for path in [j for _, j in args.model] + [args.peer_eval]}
    return args


def read_evaluation(path, parser):
    try:
        with open(path) as f:
            result = json.load(f)
        return {"mAP": 100 * float(result["mAP"]), "rank1": 100 * float(result["rank1"])}
    except (ValueError, KeyError, TypeError) as error:
        parser.error("%s is not an eval.py --json file with mAP and rank1: %s" % (path, error))


def measure(embed, shape, batches, args):
    import numpy as np

    from export_speed import crops_per_second

    speeds = {}
    for batch_size in batches:
        batch = np.random.default_rng(0).normal(size=(batch_size,) + tuple(shape)).astype("float32")
        speeds[batch_size] = crops_per_second(embed, batch, args.min_seconds, args.min_batches)
    return speeds


def measure_in_rounds(entries, batches, args):
    """``[({batch: median crops/s}, [crops/s of each round at the largest batch]), ...]``, one per ``(embed,
    shape)`` of ``entries``; each round times every entry once, in order."""
    rounds = [[measure(embed, shape, batches, args) for embed, shape in entries] for _ in range(args.rounds)]
    results = []
    for i in range(len(entries)):
        timings = [timing[i] for timing in rounds]
        results.append(({b: statistics.median(t[b] for t in timings) for b in batches},
                        [t[batches[-1]] for t in timings]))
    return results


# mAP in percent. One network evaluated through two runtimes differs in float rounding (our export of the peer's
# weights scores 77.376806 where the peer's own export scores 77.376807), which must not decide "at least the
# peer's mAP"; any real difference is far above this.
MAP_TOLERANCE = 1e-4


def reaches(a, b):
    """``a``'s mAP is at least ``b``'s, up to float rounding."""
    return a["mAP"] >= b["mAP"] - MAP_TOLERANCE


def frontier(points):
    """Indices of the points no other point beats on both crops/s and mAP (ties do not dominate)."""
    def dominates(a, b):
        return a["speed"] >= b["speed"] and reaches(a, b) and (a["speed"], a["mAP"]) != (b["speed"], b["mAP"])
    return {i for i, p in enumerate(points) if not any(dominates(q, p) for q in points)}


def best_line(points, peer_ort):
    """The last line: the fastest of our models at the peer's mAP or better, against the peer in ONNX Runtime."""
    good = [p for p in points if not p["peer"] and reaches(p, peer_ort)]
    if not good:
        top = max((p for p in points if not p["peer"]), key=lambda p: p["mAP"])
        return ("best: none (no model reaches the peer's mAP=%.2f; the most accurate is %s at mAP=%.2f) "
                "peer_ort_crops_per_s=%.1f" % (peer_ort["mAP"], top["label"], top["mAP"], peer_ort["speed"]))
    fastest = max(good, key=lambda p: p["speed"])
    return "best: %s mAP=%.2f crops_per_s=%.1f peer_ort_crops_per_s=%.1f speedup=%.2f" % (
        fastest["label"], fastest["mAP"], fastest["speed"], peer_ort["speed"], fastest["speed"] / peer_ort["speed"])


def plot(points, path, batch):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 5))
    # points are numbered and named in the legend: names written beside the points overlap where models crowd
    for number, point in enumerate(points, 1):
        style = dict(marker="*", s=160, color="tab:red") if point["peer"] else dict(marker="o", s=50, color="tab:blue")
        axes.scatter(point["speed"], point["mAP"], label="%d  %s" % (number, point["label"]), **style)
        axes.annotate(str(number), (point["speed"], point["mAP"]), textcoords="offset points", xytext=(5, 3),
                      fontsize=8)
    axes.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False, handletextpad=0.3)
    axes.set_xscale("log")
    axes.set_xlabel("crops/s at batch %d (log scale)" % batch)
    axes.set_ylabel("Market-1501 mAP (%)")
    axes.set_title("speed / accuracy, exported models (blue) and the peer (red stars)")
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv=None):
    args = parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # read once, when Paddle is imported below
    import metric_learning  # noqa: F401  (the remaining CPU defaults, before paddle loads)
    from metric_learning.deploy import embedders

    entries = []   # (label, input, runtime, evaluation, embed, is_peer)
    for prefix, eval_json in args.model:
        embed = embedders.load_embedder(prefix, threads=args.threads)
        runtime = "ONNX Runtime" if isinstance(embed, embedders.OnnxEmbedder) else "Paddle Inference"
        label = os.path.basename(os.path.dirname(os.path.abspath(prefix)))
        if embed.config.get("precision", "fp32") != "fp32":  # an int8 model sits beside its fp32 export
            label = "%s %s" % (label, embed.config["precision"])
        entries.append((label, embed.input_shape, runtime, args.evaluations[eval_json], embed, False))
    peer_shape = (3,) + args.peer_size
    with tempfile.TemporaryDirectory() as directory:
        if args.peer:
            from torchreid_peer import peer_runtimes
            runtimes = peer_runtimes(args.peer, args.peer_size[0], args.peer_size[1], directory, args.threads,
                                     args.peer_weights)
        else:
            from torchreid_peer import OnnxRuntimeEmbedder
            runtimes = {PEER_ORT: OnnxRuntimeEmbedder(args.peer_onnx, args.threads)}
        for runtime, embed in runtimes.items():
            entries.append(("peer: torchreid %s" % (args.peer or os.path.basename(args.peer_onnx)), peer_shape,
                            runtime, args.evaluations[args.peer_eval], embed, True))
        timings = measure_in_rounds([(embed, shape) for _, shape, _, _, embed, _ in entries], args.batches, args)
    rows = [(label, shape, runtime, evaluation, median, per_round, is_peer)
            for (label, shape, runtime, evaluation, _, is_peer), (median, per_round) in zip(entries, timings)]

    rank_batch = args.batches[-1]
    points = [{"label": "%s (%s)" % (label, runtime), "mAP": evaluation["mAP"], "speed": speeds[rank_batch],
               "peer": is_peer} for label, _, runtime, evaluation, speeds, _, is_peer in rows]
    on_frontier = frontier(points)
    lines = ["| | model | input | runtime | mAP | Rank-1 | %s | batch %d, each round |" % (" | ".join(
        "crops/s, batch %d" % b for b in args.batches), rank_batch), "|" + "---|" * (7 + len(args.batches))]
    for i, (label, shape, runtime, evaluation, speeds, per_round, _) in enumerate(rows):
        lines.append("| %s | %s | %dx%d | %s | %.2f | %.2f | %s | %s |" % (
            "*" if i in on_frontier else "", label, shape[1], shape[2], runtime, evaluation["mAP"],
            evaluation["rank1"], " | ".join("%.1f" % speeds[b] for b in args.batches),
            " / ".join("%.1f" % speed for speed in per_round)))
    peer_ort = next(p for p in points if p["peer"] and p["label"].endswith("(%s)" % PEER_ORT))
    summary = best_line(points, peer_ort)
    os.makedirs(args.output, exist_ok=True)
    header = ("threads %d, load average %.1f, timed >= %.1f s and >= %d batches per cell, median of %d rounds "
              "taken in turn" % (args.threads, os.getloadavg()[0], args.min_seconds, args.min_batches, args.rounds))
    with open(os.path.join(args.output, "pareto.md"), "w") as f:
        f.write("\n".join([header, ""] + lines + ["", summary]) + "\n")
    plot(points, os.path.join(args.output, "pareto.png"), rank_batch)
    print("\n".join([header] + lines))
    print("wrote %s and %s" % (os.path.join(args.output, "pareto.md"), os.path.join(args.output, "pareto.png")))
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
