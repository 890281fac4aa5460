"""Exported-model speed on CPU: crops/s of eager Paddle, Paddle Inference with and without oneDNN, ONNX Runtime.

    python benchmarks/export_speed.py                      # MobileNetV2 and PPLCNet_x1_0, 128x64 and 256x128, batch 1 and 32
    python benchmarks/export_speed.py --models PPLCNet_x1_0 --sizes 128x64 --batches 32 --min_seconds 0.5   # smoke run
    python benchmarks/export_speed.py --models OSNet_x0_25 --last_stride 2 --sizes 256x128 \
        --peer OSNet_x0_25 --peer_weights ../shared/weights/osnet_x0_25_market1501.pth   # ours against the peer

Each model is a freshly initialised ReIDNet (``build_model``, default head; speed does not depend on the
weights; ``--last_stride`` as in training), exported by ``export.export_inference_model`` (L2-normalised output) and ``export.export_onnx`` into
a temporary directory. Every runtime gets the same ready NCHW float32 batch (cropping and preprocessing are
not timed), runs it once to warm up (oneDNN and ONNX Runtime prepare kernels per input shape), then is timed
over at least ``--min_seconds`` and ``--min_batches``. The last column is the largest absolute difference of
the exported runtimes' embeddings from eager Paddle's (L2-normalised), as a check that all compute the same.

The peer (``--peer``, torchreid's OSNet, see ``benchmarks/torchreid_peer.py``) is measured in the same run the
way its users deploy it: torchreid's own network in PyTorch eager, and its ``torch.onnx.export`` in ONNX
Runtime with the same session options as ours. Its rows leave the Paddle columns empty and compare ONNX Runtime
with PyTorch eager. It needs the benchmark-only extras ``torch``, ``torchreid`` and ``onnx`` (the hint is printed).

Threads: ``--threads`` for every runtime; ``OMP_NUM_THREADS`` is set to it before Paddle loads (eager Paddle
reads it then), and the predictors and sessions are given it explicitly. Speeds depend on the CPU and its load.
"""
import argparse
import importlib.util
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "benchmarks")):
    if path not in sys.path:
        sys.path.insert(0, path)

RUNTIMES = ("eager Paddle", "Paddle Inference + oneDNN", "Paddle Inference, no oneDNN", "ONNX Runtime",
            "PyTorch eager")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="MobileNetV2,PPLCNet_x1_0", help="comma-separated backbones")
    parser.add_argument("--sizes", default="128x64,256x128", help="comma-separated HxW input sizes")
    parser.add_argument("--batches", default="1,32", help="comma-separated batch sizes")
    parser.add_argument("--last_stride", type=int, choices=(1, 2), default=1,
                        help="stride of the backbone's last stage, as train_elem.py's --last_stride (1 is the default "
                             "ReID trick and doubles the last stage's feature map on each side)")
    parser.add_argument("--peer", default="",
                        help="comma-separated torchreid OSNet widths measured beside ours (e.g. OSNet_x0_25); "
                             "needs torch, torchreid and onnx")
    parser.add_argument("--peer_weights", default=None,
                        help="torchreid .pth for the peer (default: its random initialisation)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for every runtime")
    parser.add_argument("--min_seconds", type=float, default=3.0, help="time each cell for at least this long")
    parser.add_argument("--min_batches", type=int, default=3, help="and over at least this many batches")
    args = parser.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    args.sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",") if s]
    args.batches = [int(b) for b in args.batches.split(",") if b]
    args.peer = [m for m in args.peer.split(",") if m]
    if args.peer:
        from torchreid_peer import INSTALL_HINT, peer_available, torchreid_name
        if not peer_available() or importlib.util.find_spec("onnx") is None:
            parser.error("--peer needs torch, torchreid and onnx: %s && pip install onnx==1.17.0" % INSTALL_HINT)
        for model in args.peer:
            try:
                torchreid_name(model)
            except ValueError as error:
                parser.error("--peer: %s" % error)
    if args.peer_weights and not os.path.isfile(args.peer_weights):
        parser.error("--peer_weights: no such file: %s" % args.peer_weights)
    return args


def crops_per_second(embed, batch, min_seconds, min_batches):
    embed(batch)  # warm-up
    runs, start = 0, time.perf_counter()
    while runs < min_batches or time.perf_counter() - start < min_seconds:
        embed(batch)
        runs += 1
    return runs * len(batch) / (time.perf_counter() - start)


def build_runtimes(name, height, width, directory, threads, last_stride=1):
    """``{runtime: embed(batch) -> [N, D]}`` for one backbone at one input size, each run once."""
    import numpy as np

    from metric_learning.deploy import embedders, export
    from metric_learning.evaluation import evaluator
    from metric_learning.models.reid_net import build_model

    net = build_model(name, last_stride=last_stride)
    prefix = os.path.join(directory, "%s_%dx%d" % (name, height, width), "reid")
    export.export_inference_model(net, prefix, (3, height, width))
    onnx_path = export.export_onnx(prefix)
    runtimes = dict(zip(RUNTIMES[:4], (evaluator.LayerEmbedder(net),
                                       embedders.PredictorEmbedder(prefix, threads=threads, mkldnn=True),
                                       embedders.PredictorEmbedder(prefix, threads=threads, mkldnn=False),
                                       embedders.OnnxEmbedder(onnx_path, threads=threads))))
    for embed in runtimes.values():  # Paddle Inference prints a line on its first run; keep it out of the table
        embed(np.zeros((1, 3, height, width), np.float32))
    return runtimes


def main(argv=None):
    args = parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # read once, when Paddle is imported below
    import metric_learning  # noqa: F401  (the remaining CPU defaults, before paddle loads)
    import numpy as np
    import paddle

    from metric_learning.evaluation import metrics
    from metric_learning.progress import Progress

    paddle.set_device("cpu")
    with tempfile.TemporaryDirectory() as directory:
        # export and load everything first: paddle2onnx and Paddle Inference print while they work
        cells = [(name, size, build_runtimes(name, size[0], size[1], directory, args.threads, args.last_stride))
                 for name in args.models for size in args.sizes]
        if args.peer:
            from torchreid_peer import peer_runtimes
            cells += [("torchreid %s (peer)" % name, size,
                       peer_runtimes(name, size[0], size[1], directory, args.threads, args.peer_weights))
                      for name in args.peer for size in args.sizes]
        print("last stride %d, threads %d, load average before: %.1f, timed >= %.1f s and >= %d batches per cell"
              % (args.last_stride, args.threads, os.getloadavg()[0], args.min_seconds, args.min_batches))
        header = "| model | input HxW | batch | " + " | ".join("%s (crops/s)" % r for r in RUNTIMES) \
                 + " | max abs diff vs eager |"
        print(header)
        print("|" + "---|" * (header.count("|") - 1))
        # a bar on a terminal (the table rows print above it); plain table rows when redirected
        with Progress(len(args.batches) * sum(len(runtimes) for _, _, runtimes in cells), "timed",
                      unit="runs") as progress:
            for name, (height, width), runtimes in cells:
                for batch_size in args.batches:
                    batch = np.random.default_rng(0).normal(size=(batch_size, 3, height, width)).astype("float32")
                    # the first runtime of a cell is its eager reference (Paddle for ours, PyTorch for the peer)
                    reference, *exported = [metrics.l2_normalize(embed(batch)) for embed in runtimes.values()]
                    diff = max(float(np.abs(features - reference).max()) for features in exported)
                    speeds = []
                    for runtime in RUNTIMES:
                        if runtime not in runtimes:
                            speeds.append("-")
                            continue
                        speeds.append("%.1f" % crops_per_second(runtimes[runtime], batch, args.min_seconds,
                                                                args.min_batches))
                        progress.update()
                    progress.write("| %s | %dx%d | %d | %s | %.1e |"
                                   % (name, height, width, batch_size, " | ".join(speeds), diff))
    print("load average after: %.1f" % os.getloadavg()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
