"""Evaluate a ReID embedding: CMC Rank-k / mAP / mINP under the standard protocol, or the classic Recall@K.

Standard protocol (query vs gallery, same-id-same-camera and junk ignored), from a model:
    python metric_learning/eval.py --checkpoint output/ResNet50_vd/latest --dataset_root ../shared/datasets/Market-1501-v15.09.15
    python metric_learning/eval.py --inference_model inference_model/reid --dataset_root ... --rerank True --per_camera True
from precomputed features of any model (one image file name per line, in row order):
    python metric_learning/eval.py --query_feats q.npy --gallery_feats g.npy --query_list q.txt --gallery_list g.txt --json m.json
Classic leave-one-out Recall@K over a list file (prints test_recall):
    python metric_learning/eval.py --checkpoint ... --test_list data/test.txt --image_root ../shared/datasets/Market-1501-v15.09.15
"""
if not __package__:  # run by its path: the repository root goes first on sys.path (see run_by_path.py)
    import run_by_path  # noqa: F401
import argparse
import json
import os
import sys
import warnings

from metric_learning import plots
from metric_learning.config import schema
from metric_learning.config.flags import add_verbose_flag, checkpoint_path, parse_image_shape, str2bool
from metric_learning.data import images, listfile, market
from metric_learning.errors import run_cli
from metric_learning.evaluation import evaluator, metrics, report
from metric_learning.evaluation import rerank as reranking
from metric_learning.models import checkpoint

FEATURE_FLAGS = ("query_feats", "gallery_feats", "query_list", "gallery_list")


def parse_ranks(value):
    try:
        return metrics.check_ranks(int(v) for v in str(value).split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("--ranks must be positive integers like 1,5,10; got %r" % value) from None


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the flag help, and the usage examples of the module docstring kept as written."""


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=_HelpFormatter)
    add_verbose_flag(parser)
    feats = parser.add_argument_group("precomputed features (any model, any framework)")
    feats.add_argument("--query_feats", help="query features, a float [Q, D] .npy file")
    feats.add_argument("--gallery_feats", help="gallery features, a float [G, D] .npy file")
    feats.add_argument("--query_list", help="query image file names, one per line, in the rows' order")
    feats.add_argument("--gallery_list", help="gallery image file names, one per line, in the rows' order")

    model = parser.add_argument_group("model input")
    model.add_argument("--checkpoint", type=checkpoint_path,
                       help="a training checkpoint directory (e.g. output/ResNet50_vd/latest)")
    model.add_argument("--inference_model", help="an exported inference model prefix or directory, or its .onnx file "
                                                  "(export_model.py; .onnx runs on ONNX Runtime)")
    model.add_argument("--dataset_root", help="dataset in the Market-1501 layout: evaluate query vs bounding_box_test")
    model.add_argument("--test_list", help="list file 'image_id class_id super_class_id path': leave-one-out "
                                           "Recall@K, the classic test_recall")
    model.add_argument("--image_root", help="root that --test_list paths are relative to")
    model.add_argument("--model", default=None, help="classic flag: checked against the checkpoint's config.json, "
                                                      "whose architecture is always the one loaded")
    model.add_argument("--embedding_size", type=int, default=None, help="classic flag, checked like --model")
    model.add_argument("--image_shape", type=parse_image_shape, default=None,
                       help="input C,H,W (default: the checkpoint's or exported model's, else 3,256,128)")
    model.add_argument("--test_batch_size", type=int, default=evaluator.DEFAULT_BATCH_SIZE, help="images per batch")
    model.add_argument("--use_gpu", type=str2bool, default=False, help="True runs the model on the GPU if present")
    model.add_argument("--flip", type=str2bool, default=False,
                       help="True averages each image's embedding with its horizontal mirror's")
    model.add_argument("--save_features", default=None,
                       help="directory to write query/gallery .npy + .txt (re-usable with --query_feats ...)")

    scoring = parser.add_argument_group("scoring")
    scoring.add_argument("--name_pattern", default="market1501",
                         help="file-name pattern giving person id and camera: a preset (market1501, duke) or a "
                              "regex with named groups 'pid' and 'cam'")
    scoring.add_argument("--metric", choices=metrics.METRICS, default="cosine",
                         help="cosine (on L2-normalised features) or (squared) euclidean distance")
    scoring.add_argument("--ranks", type=parse_ranks, default=",".join(map(str, metrics.DEFAULT_RANKS)),
                         help="CMC ranks (or Recall@K values) to report, e.g. 1,5,10,20")
    scoring.add_argument("--rerank", type=str2bool, default=False,
                         help="True applies k-reciprocal re-ranking (Zhong et al., CVPR 2017)")
    scoring.add_argument("--k1", type=int, default=reranking.DEFAULT_K1, help="re-ranking k1")
    scoring.add_argument("--k2", type=int, default=reranking.DEFAULT_K2, help="re-ranking k2 (query expansion)")
    scoring.add_argument("--lambda_value", type=float, default=reranking.DEFAULT_LAMBDA,
                         help="re-ranking weight of the original distance")
    scoring.add_argument("--max_memory_gb", type=float, default=reranking.DEFAULT_MAX_MEMORY_GB,
                         help="re-ranking refuses problems whose memory estimate exceeds this")
    scoring.add_argument("--per_camera", type=str2bool, default=False,
                         help="True adds a breakdown by query camera")
    scoring.add_argument("--json", default=None, help="write the metrics (fractions in [0, 1]) to this JSON file")
    scoring.add_argument("--plot", default=None, metavar="DIR",
                         help="write DIR/cmc.png (the CMC curve, Rank-1 to Rank-%d) and DIR/per_camera.png (Rank-1 "
                              "and mAP by query camera); computes those ranks and the per-camera breakdown, so "
                              "--json and the table hold them too" % plots.CMC_MAX_RANK)
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    given = [flag for flag in FEATURE_FLAGS if getattr(args, flag)]
    model_inputs = [flag for flag in ("checkpoint", "inference_model") if getattr(args, flag)]
    data_inputs = [flag for flag in ("dataset_root", "test_list") if getattr(args, flag)]
    if given:
        if len(given) < len(FEATURE_FLAGS):
            parser.error("precomputed features need all of --%s; missing --%s"
                         % (" --".join(FEATURE_FLAGS), " --".join(f for f in FEATURE_FLAGS if f not in given)))
        if model_inputs or data_inputs:
            parser.error("give either precomputed features or a model with a dataset, not both (--%s with --%s)"
                         % (given[0], (model_inputs + data_inputs)[0]))
    else:
        if len(model_inputs) != 1:
            parser.error("give one model: --checkpoint or --inference_model (or precomputed features: --%s)"
                         % " --".join(FEATURE_FLAGS))
        if len(data_inputs) != 1:
            parser.error("give one dataset: --dataset_root (standard protocol) or --test_list (leave-one-out Recall@K)")
        if args.test_list and not args.image_root:
            parser.error("--test_list needs --image_root (the folder its paths are relative to)")
    if args.test_list and (args.rerank or args.per_camera or args.plot):
        parser.error("--rerank, --per_camera and --plot apply to a query/gallery evaluation, not to --test_list")
    if args.plot and os.path.isfile(args.plot):
        parser.error("--plot takes a folder for cmc.png and per_camera.png; %s is a file" % args.plot)
    if args.save_features and not args.dataset_root:
        parser.error("--save_features needs --dataset_root")
    return args


def load_model(args):
    """``(embed, image_shape, transform)`` for --checkpoint or --inference_model; the classic --model and
    --embedding_size are only compared with the checkpoint's config.json, whose architecture is the one loaded."""
    if args.checkpoint:
        saved = schema.model_kwargs(checkpoint.read_config(args.checkpoint))
        for flag in ("model", "embedding_size"):
            if getattr(args, flag) is not None and getattr(args, flag) != saved.get(flag):
                warnings.warn("--%s %s differs from the checkpoint's %s; using the checkpoint's"
                              % (flag, getattr(args, flag), saved.get(flag)))
    # imported here: Paddle loads only when a model runs; precomputed features are scored without it
    from metric_learning.deploy import embedders

    return embedders.load_model(args.checkpoint, args.inference_model, args.image_shape, args.use_gpu)


def scoring_options(args):
    # rank1/5/10 are always computed (and written to --json); --ranks chooses what the table shows
    ranks = set(args.ranks) | set(metrics.DEFAULT_RANKS)
    if args.plot:
        ranks |= set(range(1, plots.CMC_MAX_RANK + 1))
    return dict(metric=args.metric, ranks=sorted(ranks), per_camera=args.per_camera or bool(args.plot),
                rerank=args.rerank, k1=args.k1, k2=args.k2, lambda_value=args.lambda_value,
                max_memory_gb=args.max_memory_gb)


def evaluate_model(args, log):
    # the data first: a bad image is reported before the model loads, and with every other bad one
    if args.test_list:
        paths, labels = listfile.records_to_paths_labels(listfile.read_list(args.test_list), args.image_root)
    else:
        protocol = market.load_protocol(args.dataset_root, args.name_pattern, splits=market.EVALUATION_SPLITS)
        paths = [s.path for s in protocol.query + protocol.gallery]
    images.check_images(paths, log=log)
    embed, image_shape, transform = load_model(args)
    common = dict(batch_size=args.test_batch_size, flip=args.flip, transform=transform, log=log)
    if args.test_list:
        return evaluator.evaluate_recall(embed, paths, labels, image_shape, ks=args.ranks, metric=args.metric,
                                          **common)
    result, q_feats, g_feats = evaluator.evaluate_protocol(embed, protocol, image_shape, return_features=True,
                                                            **common, **scoring_options(args))
    if args.save_features:
        for split, feats, samples in (("query", q_feats, protocol.query), ("gallery", g_feats, protocol.gallery)):
            evaluator.save_feature_set(args.save_features, split, feats, [os.path.basename(s.path) for s in samples])
        log("features written to %s (query/gallery .npy + .txt)" % args.save_features)
    return result


def main(argv=None):
    args = parse_args(argv)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    if args.query_feats:
        result = evaluator.evaluate_feature_files(args.query_feats, args.query_list, args.gallery_feats,
                                                  args.gallery_list, args.name_pattern, **scoring_options(args))
        result["input"] = {name: getattr(args, name) for name in FEATURE_FLAGS}
    else:
        result = evaluate_model(args, log)
        result["input"] = {"checkpoint": args.checkpoint, "inference_model": args.inference_model,
                           "dataset_root": args.dataset_root, "test_list": args.test_list, "flip": args.flip}
    print(report.format_recall(result, args.ranks) if args.test_list else report.format_ranking(result, args.ranks))
    if args.plot:
        for path in (plots.plot_cmc(result, os.path.join(args.plot, "cmc.png")),
                     plots.plot_per_camera(result, os.path.join(args.plot, "per_camera.png"))):
            log("wrote %s" % path)
    if args.json:
        directory = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(directory, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2, sort_keys=True)
    return result


def console():
    """The ``reid-eval`` command."""
    run_cli(main)


if __name__ == "__main__":
    console()
