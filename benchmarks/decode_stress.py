"""Stress the evaluation's prefetching decoder on real images: the load under which Pillow 13.0.0 crashed (issue 16).

    PYTHONFAULTHANDLER=1 python benchmarks/decode_stress.py --rounds 200
    PYTHONFAULTHANDLER=1 python benchmarks/decode_stress.py --decoder pillow   # the decoder the crash came from

Every round embeds ``--images`` random Market-1501 images (train, query and gallery) with an untrained
network through :func:`metric_learning.evaluation.evaluator.extract_features`: the next batch is decoded on the
prefetch thread while Paddle runs the current one on the main thread, exactly as ``eval.py`` does. A native
crash kills the process with faulthandler's traceback, so the last "round" line printed is the count that
survived; a finished run prints the total number of decodes. ``--decoder pillow`` swaps in the Pillow
decoding the project used before, to compare the two under the same load.
"""
import argparse
import faulthandler
import glob
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import metric_learning  # noqa: E402,F401  (CPU thread defaults)
import numpy as np  # noqa: E402

MARKET_DEFAULT = os.path.join(ROOT, "..", "shared", "datasets", "Market-1501-v15.09.15")


def pillow_read_image(path):
    """The decoder of the crash: Pillow, converting to RGB (only for the A/B comparison)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset_root", default=os.environ.get("MARKET1501_ROOT") or MARKET_DEFAULT)
    parser.add_argument("--rounds", type=int, default=50, help="evaluations to run")
    parser.add_argument("--images", type=int, default=512, help="random images embedded per round")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--model", default="MobileNetV3_small_x1_0")
    parser.add_argument("--decoder", choices=["opencv", "pillow"], default="opencv")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from metric_learning.data import datasets
    from metric_learning.evaluation import evaluator
    from metric_learning.models.reid_net import build_model

    paths = sorted(glob.glob(os.path.join(args.dataset_root, "*", "*.jpg")))
    if not paths:
        sys.exit("no .jpg images under %s (set --dataset_root or MARKET1501_ROOT)" % args.dataset_root)
    if args.decoder == "pillow":
        datasets.read_image = pillow_read_image
    embed = evaluator.LayerEmbedder(build_model(args.model))
    rng = np.random.default_rng(args.seed)
    decoded, start = 0, time.time()
    print("%d images under %s; decoder %s; faulthandler %s" % (len(paths), args.dataset_root, args.decoder,
                                                               "on" if faulthandler.is_enabled() else "off"),
          flush=True)
    for round_index in range(args.rounds):
        chosen = [paths[i] for i in rng.choice(len(paths), size=min(args.images, len(paths)), replace=False)]
        feats = evaluator.extract_features(embed, chosen, (3, 128, 64), batch_size=args.batch_size)
        if not np.isfinite(feats).all():
            sys.exit("round %d: non-finite embeddings" % round_index)
        decoded += len(chosen)
        print("round %d/%d: %d decodes so far, %.0f s" % (round_index + 1, args.rounds, decoded, time.time() - start),
              flush=True)
    print("survived: %d prefetching evaluations, %d image decodes on the prefetch thread, no crash (%.0f s)"
          % (args.rounds, decoded, time.time() - start))


if __name__ == "__main__":
    main()
