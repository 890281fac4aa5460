"""Train a ReID embedding with a classification loss (softmax or ArcMargin), optionally plus batch-hard triplet.

    python metric_learning/train_elem.py --model MobileNetV2 --image_shape 3,128,64 --total_iter_num 2000
    cd metric_learning && python train_elem.py --model ResNet50_vd --embedding_size 128 \
        --loss_name arcmargin --arc_scale 80.0 --arc_margin 0.15 ...
"""
if not __package__:  # run by its path: the repository root goes first on sys.path (see run_by_path.py)
    import run_by_path  # noqa: F401
from metric_learning.config import options
from metric_learning.engine import build
from metric_learning.errors import run_cli
from metric_learning.losses.combined import CombinedLoss, PartsLoss, build_loss
from metric_learning.losses.distillation import build_distillation
from metric_learning.losses.pair import TripletLoss
from metric_learning.models.heads import PART_DIM


def build_criterion(args, net, num_classes):
    """The loss of ``net``: CombinedLoss for the global head, PartsLoss (a classifier per feature) for PCB / MGN."""
    def classification(embedding_dim):
        kwargs = {"embedding_dim": embedding_dim, "num_classes": num_classes}
        if args.loss_name == "softmax":
            kwargs["label_smoothing"] = args.label_smoothing
        else:
            kwargs.update(scale=args.arc_scale, margin=args.arc_margin, easy_margin=args.arc_easy_margin)
        return build_loss(args.loss_name, **kwargs)

    metric = TripletLoss(margin=args.margin) if args.triplet_weight > 0 else None
    if args.head != "global":
        return PartsLoss({name: classification(PART_DIM) for name in net.classifier_feature_names}, metric,
                         metric_weight=args.triplet_weight)
    return CombinedLoss(classification(net.embedding_dim), metric, metric_weight=args.triplet_weight,
                        distillation=build_distillation(args.teacher_model, args.distill_temperature),
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
    options.check_head_args(parser, args)
    return args


def main(argv=None):
    args = parse_args(argv)
    build.run_training(args, build_criterion)


def console():
    """The ``reid-train-elem`` command."""
    run_cli(main)


if __name__ == "__main__":
    console()
