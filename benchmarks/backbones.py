"""Backbone table: parameters, multiply-adds, CPU inference speed, and training speed and
Rank-1/mAP after one training budget, per backbone.

    python benchmarks/backbones.py                       # all backbones, 128x64 and 256x128, 150 iterations
    python benchmarks/backbones.py --models MobileNetV2 --sizes 256x128 --min_seconds 2 --train_iters 0
    python benchmarks/backbones.py --dataset_root ../shared/datasets/Market-1501-v15.09.15 --train_iters 1000

Measures the backbone as ReIDNet uses it (feature-map trunk, ``--last_stride``, default
1). GMACs: multiply-adds of all Conv2D and Linear layers for one image, counted by
forward hooks (1 MAC = 2 FLOPs; PaddleClas's model tables call MACs "FLOPs");
BN, activations, pooling and element-wise ops are left out. Speed: eval mode, no grad,
``--batch_size`` images per forward, after one warm-up batch, timed over at least
``--min_seconds`` and ``--min_batches``; numbers depend on the CPU and its load.

Training (``--train_iters`` > 0): every backbone trains from scratch with the same
recipe and budget through ``metric_learning/train_elem.py`` in its own process, at
``--train_size``: batch 32, Adam 3e-3 constant, softmax + label smoothing, random
erasing 0.3, no weight decay (recipes/synthetic_mobilenetv3_small_x1_0.args), on
the embedded synthetic set by default or on ``--dataset_root`` (the standard
protocol). The table adds the median of its logged training images/s and the
Rank-1 / mAP of the final evaluation. From scratch, so no backbone is favoured by
pretrained weights the others lack.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import metric_learning  # noqa: E402,F401  (CPU defaults before paddle loads)
import numpy as np  # noqa: E402
import paddle  # noqa: E402

from metric_learning.engine import rundir  # noqa: E402
from metric_learning.models.backbones import backbone_names, build_backbone  # noqa: E402


def parse_size(text):
    height, width = (int(v) for v in text.lower().split("x"))
    return height, width


def count_macs(net, height, width):
    """``(multiply-adds of every Conv2D and Linear for one image, output shape)``."""
    total = []

    def conv(layer, inputs, output):  # weight [out, in / groups, kh, kw]
        total.append(int(np.prod(output.shape)) * int(np.prod(layer.weight.shape[1:])))

    def linear(layer, inputs, output):  # weight [in, out]
        total.append(int(np.prod(output.shape)) * layer.weight.shape[0])

    hooks = [layer.register_forward_post_hook(conv if isinstance(layer, paddle.nn.Conv2D) else linear)
             for layer in net.sublayers() if isinstance(layer, (paddle.nn.Conv2D, paddle.nn.Linear))]
    with paddle.no_grad():
        out_shape = net(paddle.zeros([1, 3, height, width])).shape
    for hook in hooks:
        hook.remove()
    return sum(total), out_shape


def images_per_second(net, height, width, batch_size, min_seconds, min_batches):
    x = paddle.to_tensor(np.random.RandomState(0).randn(batch_size, 3, height, width).astype("float32"))
    with paddle.no_grad():
        net(x)  # warm-up: allocations, kernel selection
        batches, start = 0, time.perf_counter()
        while batches < min_batches or time.perf_counter() - start < min_seconds:
            net(x).numpy()  # .numpy() waits for the result
            batches += 1
        elapsed = time.perf_counter() - start
    return batches * batch_size / elapsed


def train_and_evaluate(name, size, iters, data_args, last_stride):
    """``(median training images/s, Rank-1, mAP)`` of one train_elem run, in a fresh process."""
    height, width = parse_size(size)
    with tempfile.TemporaryDirectory(prefix="backbone_bench_") as save_dir:
        cmd = [sys.executable, os.path.join(ROOT, "metric_learning", "train_elem.py"), "--model", name,
               "--image_shape", "3,%d,%d" % (height, width), "--last_stride", str(last_stride),
               "--train_batch_size", "32", "--optimizer", "adam", "--lr", "0.003", "--lr_strategy", "constant",
               "--weight_decay", "0", "--erase_prob", "0.3", "--total_iter_num", str(iters),
               "--display_iter_step", str(max(1, iters // 10)), "--model_save_dir", save_dir] + data_args
        run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if run.returncode != 0:
            raise RuntimeError("training %s failed:\n%s" % (name, run.stderr[-3000:]))
        records = rundir.read_log(os.path.join(save_dir, name))
    # the first logged interval includes start-up (cache fill, kernel compilation)
    speeds = [r["images_per_s"] for r in records if "images_per_s" in r][1:]
    final = [r["eval"] for r in records if "eval" in r][-1]
    rank1 = final.get("rank1", final.get("recall@1"))
    return statistics.median(speeds), rank1, final.get("mAP")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=backbone_names(), choices=backbone_names())
    parser.add_argument("--sizes", nargs="+", default=["128x64", "256x128"], help="HxW input sizes")
    parser.add_argument("--last_stride", type=int, default=1, choices=(1, 2))
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--min_seconds", type=float, default=3.0)
    parser.add_argument("--min_batches", type=int, default=3)
    parser.add_argument("--train_iters", type=int, default=150,
                        help="training budget per backbone in iterations of 32 images (0: skip training)")
    parser.add_argument("--train_size", default="128x64", help="HxW input size for the training runs")
    parser.add_argument("--dataset_root", help="train and evaluate on this Market-1501-style root "
                                               "(default: the embedded synthetic set)")
    args = parser.parse_args(argv)
    data_args = ["--dataset_root", args.dataset_root] if args.dataset_root else []

    paddle.set_device("cpu")
    print("CPU threads (OMP_NUM_THREADS): %s, load average before: %.1f, batch %d, last_stride %d"
          % (os.environ.get("OMP_NUM_THREADS"), os.getloadavg()[0], args.batch_size, args.last_stride))
    header = "| backbone | input HxW | out C x h x w | params (M) | GMACs | inference img/s |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name in args.models:
        net = build_backbone(name, last_stride=args.last_stride)
        net.eval()
        params = sum(int(np.prod(p.shape)) for p in net.parameters())
        for size in args.sizes:
            height, width = parse_size(size)
            macs, out_shape = count_macs(net, height, width)
            speed = images_per_second(net, height, width, args.batch_size, args.min_seconds, args.min_batches)
            print("| %s | %dx%d | %d x %d x %d | %.2f | %.3f | %.1f |"
                  % (name, height, width, out_shape[1], out_shape[2], out_shape[3], params / 1e6, macs / 1e9,
                     speed), flush=True)
    if args.train_iters:
        print("\nTraining from scratch at %s, %d iterations x 32 images, on %s:"
              % (args.train_size, args.train_iters, args.dataset_root or "the embedded synthetic set"))
        header = "| backbone | training img/s | Rank-1 | mAP |"
        print(header)
        print("|" + "---|" * (header.count("|") - 1))
        for name in args.models:
            speed, rank1, mean_ap = train_and_evaluate(name, args.train_size, args.train_iters, data_args,
                                                       args.last_stride)
            print("| %s | %.1f | %.2f | %s |" % (name, speed, 100 * rank1,
                                                 "n/a" if mean_ap is None else "%.2f" % (100 * mean_ap)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
