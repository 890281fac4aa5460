"""Fine-tune a ReID embedding with a pair loss (triplet, quadruplet, EML, n-pairs) on P x K batches.

    python metric_learning/train_pair.py --model MobileNetV2 --image_shape 3,128,64 \
        --pretrained_model output/MobileNetV2/latest --loss_name triplet --samples_each_class 4

Starts from a train_elem checkpoint: backbone and head are kept; the classifier (trained by the
classification loss, saved apart in criterion.pdparams) does not apply to pair losses and is left out.
"""
if not __package__:  # run by its path: the repository root goes first on sys.path (see run_by_path.py)
    import run_by_path  # noqa: F401
from metric_learning.config import options
from metric_learning.engine import build
from metric_learning.errors import run_cli
from metric_learning.losses.combined import CombinedLoss, build_loss
from metric_learning.losses.distillation import build_distillation

# The classic implementation applied pair losses to the retrieval embedding itself.
PAIR_FEATURES = "after_bn"


def build_criterion(args, net, num_classes):
    kwargs = {"triplet": {"margin": args.margin, "soft_margin": args.soft_margin},
              "quadruplet": {"margin": args.margin},
              "eml": {},
              "npairs": {"reg_lambda": args.npairs_reg_lambda}}[args.loss_name]
    return CombinedLoss(None, build_loss(args.loss_name, **kwargs), metric_features=PAIR_FEATURES,
                        distillation=build_distillation(args.teacher_model, args.distill_temperature),
                        distillation_weight=args.distill_weight)


def parse_args(argv=None):
    parser = options.new_parser(__doc__.split("\n")[0])
    options.add_data_args(parser)
    options.add_model_args(parser)
    options.add_train_args(parser, pair=True)
    options.add_pair_loss_args(parser)
    args = parser.parse_args(argv)
    args.train_batch_size = args.train_batch_size or args.batch_size
    if args.head != "global":
        parser.error("--head %s: train_pair.py fine-tunes the global head; train part heads with train_elem.py "
                     "(--triplet_weight for MGN's triplet)" % args.head)
    if args.samples_each_class < 2:
        parser.error("--samples_each_class must be >= 2: pair losses need two images of an identity per batch")
    if args.pretrained_model and not args.checkpoint:
        print("note: the classifier of %s is not used by pair losses; only backbone and head are loaded"
              % args.pretrained_model)
    return args


def main(argv=None):
    args = parse_args(argv)
    build.run_training(args, build_criterion)


def console():
    """The ``reid-train-pair`` command."""
    run_cli(main)


if __name__ == "__main__":
    console()
