"""Cost of the input pipeline per image: decoding, transforms, the decoded-image cache.

    python benchmarks/data_pipeline.py --root /path/to/Market-1501-v15.09.15 --limit 2000
    python benchmarks/data_pipeline.py                  # $MARKET1501_ROOT, else a generated synthetic set

Rows (single process, like DataLoader num_workers=0): a training item read from disk (decode + resize +
flip/pad/erasing + normalise), the same item from the cache and an evaluation item from the cache. Also the
cache size for the whole training split: ``N * H * W * 3`` bytes. Numbers depend on the CPU and its load.
The up-front image check has its own benchmark, ``benchmarks/image_check.py``.
"""
import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import metric_learning  # noqa: E402,F401  (CPU defaults before paddle loads)

from metric_learning.config import flags  # noqa: E402
from metric_learning.data import datasets, market, synthetic, transforms  # noqa: E402


def per_item_ms(dataset, passes=1):
    start = time.perf_counter()
    for _ in range(passes):
        for i in range(len(dataset)):
            dataset[i]
    return 1000.0 * (time.perf_counter() - start) / (passes * len(dataset))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=os.environ.get("MARKET1501_ROOT"),
                        help="Market-1501-layout dataset (default: $MARKET1501_ROOT, else generate a synthetic one)")
    parser.add_argument("--image_shapes", default="3,128,64;3,256,128", help="';'-separated C,H,W shapes")
    parser.add_argument("--limit", type=int, default=2000, help="training images to time (default: 2000)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = args.root
        if root is None:
            root = os.path.join(tmp, "synthetic")
            synthetic.generate(root)
        train = market.load_protocol(root).train
        labels, _ = market.relabel(train)
        subset, sub_labels = train[:args.limit], labels[:args.limit]
        print("dataset %s: %d training images, timing %d" % (root, len(train), len(subset)))
        rows = []
        for text in args.image_shapes.split(";"):
            shape = flags.parse_image_shape(text)
            train_tf = transforms.build_transforms(shape, train=True, seed=0)
            eval_tf = transforms.build_transforms(shape, train=False)
            uncached = datasets.ImageDataset.from_samples(subset, sub_labels, train_tf)
            cached = datasets.ImageDataset.from_samples(subset, sub_labels, train_tf, cache=True).fill_cache()
            cached_eval = datasets.ImageDataset.from_samples(subset, sub_labels, eval_tf, cache=True).fill_cache()
            full_cache_mb = len(train) * shape[1] * shape[2] * 3 / 1e6
            rows.append(("%dx%d" % shape[1:], per_item_ms(uncached), per_item_ms(cached, 2),
                         per_item_ms(cached_eval, 2), full_cache_mb))
            print("  %s done" % text, flush=True)

    print("\n| size    | train item, disk | train item, cache | eval item, cache | cache, all train |")
    print("|---------|------------------|-------------------|------------------|------------------|")
    for size, disk, cache, cache_eval, mb in rows:
        print("| %-7s | %11.2f ms   | %12.2f ms   | %11.2f ms   | %11.0f MB   |" % (size, disk, cache, cache_eval, mb))


if __name__ == "__main__":
    main()
