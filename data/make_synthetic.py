"""Generate the procedural synthetic ReID dataset (Market-1501 layout) used by the demo and the tests.

Example (from the repository root):

    python data/make_synthetic.py                       # -> data/synthetic, 60 train + 60 test ids, 6 cameras
    python data/make_synthetic.py --root /tmp/syn --num_train_ids 200 --num_test_ids 200 --seed 1 --overwrite
"""
import argparse
import os
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from metric_learning.data import synthetic  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=os.path.join(REPO_ROOT, "data", "synthetic"),
                        help="output folder (default: the repository's data/synthetic)")
    parser.add_argument("--num_train_ids", type=int, default=60)
    parser.add_argument("--num_test_ids", type=int, default=60)
    parser.add_argument("--num_cameras", type=int, default=6)
    parser.add_argument("--images_per_id_per_cam", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--height", type=int, default=128, help="image height in pixels (default: 128)")
    parser.add_argument("--width", type=int, default=64, help="image width in pixels (default: 64)")
    parser.add_argument("--overwrite", action="store_true", help="replace the split folders if --root already has them")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    try:
        counts = synthetic.generate(args.root, num_train_ids=args.num_train_ids, num_test_ids=args.num_test_ids,
                                    num_cameras=args.num_cameras, images_per_id_per_cam=args.images_per_id_per_cam,
                                    seed=args.seed, image_size=(args.height, args.width), overwrite=args.overwrite)
    except ValueError as exc:
        sys.exit("error: %s" % exc)
    print("wrote %s in %.1f s" % (args.root, time.time() - start))
    for folder in synthetic.SPLIT_FOLDERS:
        print("  %-19s %6d images" % (folder, counts[folder]))
    print("  %d train ids, %d test ids, %d junk (-1) and %d distractor (0000) gallery images"
          % (counts["train_ids"], counts["test_ids"], counts["junk"], counts["distractors"]))


if __name__ == "__main__":
    main()
