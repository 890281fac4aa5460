"""Search a gallery with query embeddings and save the top-k as a picture (and print it).

    python metric_learning/search_gallery.py --query_feats feats/query.npy --query_list feats/query.txt \
        --gallery_feats feats/gallery.npy --gallery_list feats/gallery.txt \
        --dataset_root ../shared/datasets/Market-1501-v15.09.15 --queries 0,10,20 --k 10 \
        --output output/search/top10.png

The feature files are those infer.py or eval.py --save_features write: <name>.npy, one row per image
(normalised here, so scores are cosine similarities), and <name>.txt, the image on each row. Images are
found under --query_image_root and --gallery_image_root (--dataset_root sets them to its query/ and
bounding_box_test/). Person ids come from the file names (--name_pattern, as for eval.py); with
--name_pattern none the results are not framed.
"""
if not __package__:  # run by its path: the repository root goes first on sys.path (see run_by_path.py)
    import run_by_path  # noqa: F401
import argparse
import os

import numpy as np

from metric_learning.config.flags import add_verbose_flag, in_repo
from metric_learning.data import market
from metric_learning.deploy import search
from metric_learning.errors import run_cli
from metric_learning.evaluation import evaluator, metrics


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_verbose_flag(parser)
    for split in ("query", "gallery"):
        parser.add_argument("--%s_feats" % split, required=True, help="%s embeddings, a float [N, D] .npy" % split)
        parser.add_argument("--%s_list" % split, required=True, help="%s image names, one per row of the .npy" % split)
        parser.add_argument("--%s_image_root" % split, default="", help="folder the %s names are relative to" % split)
    parser.add_argument("--dataset_root", help="a Market-1501-layout root: sets both image roots")
    parser.add_argument("--name_pattern", default="market1501",
                        help="file-name pattern giving person ids (market1501, duke, a regex), or none")
    queries = parser.add_mutually_exclusive_group()
    queries.add_argument("--queries", help="comma-separated query rows to show, e.g. 0,10,20")
    queries.add_argument("--num_queries", type=int, default=5, help="show the first N queries")
    parser.add_argument("--k", type=int, default=10, help="results per query")
    parser.add_argument("--index", choices=search.INDEX_KINDS, default="auto",
                        help="exact (IndexFlatIP), ivf (IndexIVFFlat) or auto (ivf from %d gallery rows)"
                             % search.IVF_THRESHOLD)
    parser.add_argument("--nlist", type=int, default=None, help="IVF lists (default 4 * sqrt(gallery size))")
    parser.add_argument("--nprobe", type=int, default=None,
                        help="IVF lists scanned per query (default %d, at most nlist)" % search.DEFAULT_NPROBE)
    parser.add_argument("--output", default=in_repo("output", "search", "topk.png"), help="the PNG to write")
    args = parser.parse_args(argv)
    if args.dataset_root:
        args.query_image_root = os.path.join(args.dataset_root, market.SPLIT_FOLDERS["query"])
        args.gallery_image_root = os.path.join(args.dataset_root, market.SPLIT_FOLDERS["gallery"])
    return args


def load_named_features(feats_path, list_path, pattern):
    """``(feats, names, pids or None)``: the rows of ``feats_path`` and the names of ``list_path``."""
    names = evaluator.read_name_list(list_path)
    if pattern == "none":
        if not os.path.isfile(feats_path):
            raise FileNotFoundError("feature file %s does not exist" % feats_path)
        feats = metrics.as_features(np.load(feats_path, allow_pickle=False), feats_path)
        if len(feats) != len(names):
            raise ValueError("%s has %d rows but %s lists %d names" % (feats_path, len(feats), list_path, len(names)))
        return feats, names, None
    feats, pids, _ = evaluator.load_feature_set(feats_path, list_path, pattern)
    return feats, names, pids


def query_rows(args, num_queries):
    if args.queries is None:
        rows = list(range(min(args.num_queries, num_queries)))
    else:
        try:
            rows = [int(v) for v in args.queries.split(",") if v.strip()]
        except ValueError:
            raise ValueError("--queries must be comma-separated row numbers, got %r" % args.queries) from None
    bad = [r for r in rows if not 0 <= r < num_queries]
    if not rows or bad:
        raise ValueError("--queries: rows must be between 0 and %d, got %s" % (num_queries - 1, bad or "none"))
    return rows


def main(argv=None):
    args = parse_args(argv)
    q_feats, q_names, q_pids = load_named_features(args.query_feats, args.query_list, args.name_pattern)
    g_feats, g_names, g_pids = load_named_features(args.gallery_feats, args.gallery_list, args.name_pattern)
    rows = query_rows(args, len(q_feats))
    # cosine similarity whatever wrote the files (eval.py --save_features keeps the raw features)
    index = search.GallerySearch(metrics.l2_normalize(g_feats), index=args.index, nlist=args.nlist, nprobe=args.nprobe)
    scores, indices = index.search(metrics.l2_normalize(q_feats[rows]), args.k)
    for row, row_scores, row_indices in zip(rows, scores, indices):
        print("%s:" % q_names[row], "  ".join("%s %.3f" % (g_names[g], s) for g, s in zip(row_indices, row_scores)))
    size = search.save_topk_grid(
        args.output, [os.path.join(args.query_image_root, q_names[r]) for r in rows],
        [os.path.join(args.gallery_image_root, name) for name in g_names], indices,
        None if q_pids is None else q_pids[rows], g_pids, scores)
    print("wrote %s (%d x %d px, %s index over %d gallery images)" % (args.output, size[1], size[0], index.kind,
                                                                     index.size))


def console():
    """The ``reid-search`` command."""
    run_cli(main)


if __name__ == "__main__":
    console()
