"""What the up-front image check costs on Market-1501: cold (every file decoded) and warm (cache file + stat).

    python benchmarks/image_check.py

Checks the train, query and gallery images (36,036 files) with
:func:`metric_learning.data.images.check_images` into a fresh cache file, then again as a new process would:
the in-process memory is cleared, so the second pass reads the cache file and ``stat`` s every image.
"Cold" means no cached verdicts; the operating system's page cache may still hold the files.
"""
import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import metric_learning  # noqa: E402,F401  (CPU thread defaults)

MARKET_DEFAULT = os.path.join(ROOT, "..", "shared", "datasets", "Market-1501-v15.09.15")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset_root", default=os.environ.get("MARKET1501_ROOT") or MARKET_DEFAULT)
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: one per core)")
    args = parser.parse_args()

    from metric_learning.data import images, market

    protocol = market.load_protocol(args.dataset_root, drop_junk=False)
    paths = [s.path for split in protocol for s in split]
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, images.CACHE_FILE)
        for label in ("cold", "warm"):
            images._VERIFIED.clear()
            start, cpu = time.time(), time.process_time()
            bad = images.check_images(paths, on_bad_image="skip", cache_path=cache, workers=args.workers)
            print("%s: %d images, %d bad, %.2f s wall, %.2f s CPU%s"
                  % (label, len(paths), len(bad), time.time() - start, time.process_time() - cpu,
                     "; cache file %.1f MB" % (os.path.getsize(cache) / 1e6) if label == "cold" else ""), flush=True)


if __name__ == "__main__":
    main()
