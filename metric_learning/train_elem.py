"""Train a ReID embedding with a classification loss (softmax or ArcMargin), optionally plus batch-hard triplet.

    python metric_learning/train_elem.py --model MobileNetV2 --image_shape 3,128,64 --total_iter_num 2000
    cd metric_learning && python train_elem.py --model ResNet50_vd --embedding_size 128 \
        --loss_name arcmargin --arc_scale 80.0 --arc_margin 0.15 ...
"""
import os
import sys

# Run as a script from anywhere: put the repository root (not this folder, whose
# module names would shadow third-party ones) first on sys.path.
_PKG_DIR = os.path.dirname(os.path.abspath(__file__))
if os.path.abspath(sys.path[0] or os.getcwd()) == _PKG_DIR:
    sys.path[0] = os.path.dirname(_PKG_DIR)

import metric_learning  # noqa: E402,F401  (sets CPU thread/MKL defaults before paddle loads)
from metric_learning.engine import build  # noqa: E402
from metric_learning.losses import combined as losses  # noqa: E402
from metric_learning.config import options  # noqa: E402
from metric_learning.config.flags import run_cli  # noqa: E402


def build_criterion(args, embedding_dim, num_classes):
    kwargs = {"embedding_dim": embedding_dim, "num_classes": num_classes}
    if args.loss_name == "softmax":
        kwargs["label_smoothing"] = args.label_smoothing
    else:
        kwargs.update(scale=args.arc_scale, margin=args.arc_margin, easy_margin=args.arc_easy_margin)
    classification = losses.build_loss(args.loss_name, **kwargs)
    metric = losses.TripletLoss(margin=args.margin) if args.triplet_weight > 0 else None
    return losses.CombinedLoss(classification, metric, metric_weight=args.triplet_weight,
                               distillation=losses.build_distillation(args.teacher_model, args.distill_temperature),
                               distillation_weight=args.distill_weight)


def parse_args(argv=None):
    parser = options.new_parser(__doc__.split("\n")[0])
    options.add_data_args(parser)
    options.add_model_args(parser)
    options.add_train_args(parser, pair=False)
    options.add_elem_loss_args(parser)
    args = parser.parse_args(argv)
    if args.triplet_weight > 0 and args.samples_each_class < 2:
        parser.error("--triplet_weight needs a P x K sampler: set --samples_each_class K (K >= 2)")
    return args


def main(argv=None):
    args = parse_args(argv)
    build.run_training(args, build_criterion)


if __name__ == "__main__":
    run_cli(main)
