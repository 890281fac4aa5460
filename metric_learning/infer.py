"""Write embeddings of images as .npy plus the matching name list (the files eval.py reads).

    python metric_learning/infer.py --checkpoint output/MobileNetV2/latest --image_dir some/crops --output_dir feats
    python metric_learning/infer.py --inference_model inference_model/reid --image_list crops.txt --name crops
    python metric_learning/infer.py --inference_model inference_model/reid.onnx --image_dir some/crops   # ONNX Runtime
    python metric_learning/infer.py --checkpoint ... --dataset_root <market root> --output_dir feats   # query + gallery

Row i of <name>.npy (float32 [N, D], L2-normalised unless --normalize False) is the image on line i of
<name>.txt. With --dataset_root the query and gallery sets are written as query.npy/.txt and gallery.npy/.txt,
ready for `eval.py --query_feats ... --gallery_feats ... --query_list ... --gallery_list ...`.
A checkpoint or an exported model (Paddle Inference, or ONNX Runtime for a .onnx file, with the preprocessing
its <prefix>.reid.json describes) is loaded and run exactly as eval.py runs it.
"""
if not __package__:  # run by its path: the repository root goes first on sys.path (see run_by_path.py)
    import run_by_path  # noqa: F401
import os

from metric_learning.config import options
from metric_learning.config.flags import checkpoint_path, in_repo, parse_image_shape, str2bool
from metric_learning.data import images, market
from metric_learning.deploy import embedders
from metric_learning.errors import run_cli
from metric_learning.evaluation import evaluator, metrics


def parse_args(argv=None):
    parser = options.new_parser(__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=checkpoint_path,
                        help="a training checkpoint directory (e.g. output/<model>/latest)")
    source.add_argument("--inference_model", help="an exported model (export_model.py): its prefix or directory "
                                                  "(Paddle Inference) or its .onnx file (ONNX Runtime)")
    images = parser.add_mutually_exclusive_group(required=True)
    images.add_argument("--image_dir", help="embed every image in this folder (sorted by name)")
    images.add_argument("--image_list", help="a text file with one image path per line (relative to --image_root)")
    images.add_argument("--dataset_root", help="a Market-1501-style root: embed its query and gallery sets")
    parser.add_argument("--image_root", default="", help="root of the relative paths in --image_list")
    parser.add_argument("--name_pattern", default="market1501", help="file-name pattern for --dataset_root")
    parser.add_argument("--output_dir", default=in_repo("features"), help="where <name>.npy and <name>.txt are written")
    parser.add_argument("--name", default="images", help="base name of the output files (not for --dataset_root)")
    parser.add_argument("--image_shape", type=parse_image_shape, default=None,
                        help="C,H,W (default: the checkpoint's training shape or the exported model's input)")
    parser.add_argument("--test_batch_size", type=int, default=64, help="images per batch")
    parser.add_argument("--flip", type=str2bool, default=False, help="average with the mirrored image's embedding")
    parser.add_argument("--normalize", type=str2bool, default=True, help="L2-normalise the embeddings")
    parser.add_argument("--use_gpu", type=str2bool, default=False, help="run on the GPU when available")
    return parser.parse_args(argv)


def build_embed_files(args):
    """``embed_files(paths) -> float32 [N, D]`` for the model the flags name: a checkpoint or an export loads and
    embeds through the same code as eval.py's, so both give the features eval.py would score."""
    embed, image_shape, transform = embedders.load_model(args.checkpoint, args.inference_model, args.image_shape,
                                                        args.use_gpu)

    def embed_files(paths):
        feats = evaluator.extract_features(embed, paths, image_shape, args.test_batch_size, flip=args.flip,
                                            transform=transform)
        return metrics.l2_normalize(feats) if args.normalize else feats

    return embed_files


def main(argv=None):
    args = parse_args(argv)
    if args.dataset_root:
        protocol = market.load_protocol(args.dataset_root, args.name_pattern, splits=market.EVALUATION_SPLITS)
        jobs = [("query", [s.path for s in protocol.query]), ("gallery", [s.path for s in protocol.gallery])]
        jobs = [(name, paths, [os.path.basename(p) for p in paths]) for name, paths in jobs]
    elif args.image_dir:
        names = market.list_images(args.image_dir)
        if not names:
            raise ValueError("--image_dir %s holds no images" % args.image_dir)
        jobs = [(args.name, [os.path.join(args.image_dir, n) for n in names], names)]
    else:
        names = evaluator.read_name_list(args.image_list)
        jobs = [(args.name, [os.path.join(args.image_root, n) for n in names], names)]
    # every bad file named at once, before the model loads
    images.check_images([path for _, paths, _ in jobs for path in paths])
    embed_files = build_embed_files(args)
    for name, paths, names in jobs:
        feats = embed_files(paths)
        path = evaluator.save_feature_set(args.output_dir, name, feats, names)
        print("wrote %s.npy [%d x %d] and %s.txt" % (path, feats.shape[0], feats.shape[1], path))


def console():
    """The ``reid-infer`` command."""
    run_cli(main)


if __name__ == "__main__":
    console()
