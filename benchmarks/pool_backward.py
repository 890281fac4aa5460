"""CPU time of one forward + backward of the spatial poolings a part head could use, in Paddle.

MGN max-pools its features. Paddle's backward of the reduction ``Tensor.max(axis=[2, 3])`` is far slower on CPU
than that of ``F.adaptive_max_pool2d(x, 1)``, which computes the same values and gradients; this prints both (and
the average pool, for scale) on the map MGN's part branches give OSNet x0.25 at 256x128 (128 x 32 x 16 for 64
crops), the median of ``--repeats`` calls, each in the same process after one untimed call.

    python benchmarks/pool_backward.py [--shape 64,128,32,16] [--repeats 3]
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import metric_learning  # noqa: E402,F401  (sets thread/MKL defaults before paddle loads)
import numpy as np  # noqa: E402
import paddle  # noqa: E402
import paddle.nn.functional as F  # noqa: E402

POOLINGS = {
    "F.adaptive_avg_pool2d(x, 1)": lambda x: F.adaptive_avg_pool2d(x, 1),
    "F.adaptive_max_pool2d(x, 1)": lambda x: F.adaptive_max_pool2d(x, 1),
    "x.max(axis=[2, 3])": lambda x: x.max(axis=[2, 3], keepdim=True),
}


def seconds(pool, x, repeats):
    def once():
        start = time.perf_counter()
        pool(x).sum().backward()
        x.clear_gradient()
        return time.perf_counter() - start
    once()
    return statistics.median(once() for _ in range(repeats))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="64,128,32,16", help="N,C,H,W of the pooled map")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    shape = [int(v) for v in args.shape.split(",")]
    x = paddle.to_tensor(np.random.RandomState(0).randn(*shape).astype("float32"), stop_gradient=False)
    print("forward + backward of a [%s] map, %s threads, median of %d" % (
        args.shape, os.environ.get("OMP_NUM_THREADS"), args.repeats))
    for name, pool in POOLINGS.items():
        print("%-30s %10.4f s" % (name, seconds(pool, x, args.repeats)))


if __name__ == "__main__":
    main()
