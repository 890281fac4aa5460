"""Build train.txt / test.txt list files from Market-1501's gt_bbox folder.

Examples (from the repository root):

    python data/build_market_lists.py --root /path/to/Market-1501-v15.09.15
    python data/build_market_lists.py --root ... --num_test_ids 700 --output_dir data/
    python data/build_market_lists.py --root ... --split tail --num_test 1014   # the old notebook's split

The dataset root is usually read-only, so the lists go to this repository's data/ folder by default.
"""
import argparse
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from metric_learning.data import listfile  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=os.environ.get("MARKET1501_ROOT"),
                        help="Market-1501 root folder (default: $MARKET1501_ROOT)")
    parser.add_argument("--output_dir", default=os.path.join(REPO_ROOT, "data"),
                        help="where train.txt and test.txt go (default: the repository's data/)")
    parser.add_argument("--folder", default="gt_bbox", help="image folder under --root (default: gt_bbox)")
    parser.add_argument("--split", choices=("identity", "tail"), default="identity",
                        help="identity: disjoint train/test identities (default); tail: last --num_test images by name")
    parser.add_argument("--num_test_ids", type=int, default=None,
                        help="identity split: number of test ids, the largest pids (default: half, rounded down)")
    parser.add_argument("--num_test", type=int, default=listfile.DEFAULT_NUM_TEST_IMAGES,
                        help="tail split: number of test images (default: %(default)s)")
    parser.add_argument("--pattern", default="market1501",
                        help="file-name pattern: a preset (market1501, duke) or a regex with a named group pid")
    args = parser.parse_args(argv)
    if not args.root:
        parser.error("--root is required (or set MARKET1501_ROOT)")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        counts = listfile.build_market_lists(args.root, args.output_dir, split=args.split,
                                             num_test_ids=args.num_test_ids, num_test=args.num_test,
                                             folder=args.folder, pattern=args.pattern)
    except ValueError as exc:  # bad folder, file name or split size: one line, no traceback
        sys.exit("error: %s" % exc)
    print("read %d images of %d classes from %s" % (counts["all"]["images"], counts["all"]["classes"],
                                                     os.path.join(args.root, args.folder)))
    for name in ("train", "test"):
        c = counts[name]
        print("%-5s %6d images %5d classes -> %s" % (name, c["images"], c["classes"], c["path"]))


if __name__ == "__main__":
    main()
