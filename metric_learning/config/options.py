"""Command-line flags shared by the scripts, grouped by concern.

The classic notebook's flags are accepted as written (booleans as ``True`` /
``False`` strings); everything new has a default that reproduces the classic
behaviour or is documented in ``--help``.
"""
import argparse
import shlex

from metric_learning.config import schema
from metric_learning.config.flags import add_verbose_flag, checkpoint_path, in_repo, parse_image_shape, str2bool
from metric_learning.data.market import PATTERNS
from metric_learning.losses.classification import CLASSIFICATION_LOSSES
from metric_learning.losses.pair import PAIR_LOSSES
from metric_learning.models.backbones import BACKBONES
from metric_learning.models.heads import DEFAULT_NUM_PARTS, HEADS, PART_DIM, head_flag_error


class RecipeArgumentParser(argparse.ArgumentParser):
    """Reads ``@file`` argument files (``recipes/*.args``): each line is ``--flag value`` (or a lone flag),
    split as a shell would; blank lines and ``#`` comments are skipped. Flags given after ``@file`` on the
    command line override the file's."""

    def convert_arg_line_to_args(self, arg_line):
        return shlex.split(arg_line, comments=True)


def new_parser(description):
    return add_verbose_flag(RecipeArgumentParser(description=description, fromfile_prefix_chars="@",
                                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter))


def backbone_name(value):
    """argparse type of ``--model``: an unknown name is refused before any data is generated or read."""
    if value not in BACKBONES:
        raise argparse.ArgumentTypeError("unknown backbone %r; choose one of: %s" % (value, ", ".join(BACKBONES)))
    return value


def add_data_args(parser, train=True):
    group = parser.add_argument_group("data (no data flag: the embedded synthetic dataset)")
    group.add_argument("--dataset_root", default=None,
                       help="a dataset in the Market-1501 layout (bounding_box_train, query, bounding_box_test): "
                            "train on bounding_box_train, evaluate query vs gallery with camera filtering")
    group.add_argument("--name_pattern", default="market1501",
                       help="file-name pattern giving person id and camera: a preset (%s) or a regex with named "
                            "groups 'pid' and 'cam'" % ", ".join(sorted(PATTERNS)))
    if train:
        group.add_argument("--train_list", default=None,
                           help="list file 'image_id class_id super_class_id path' to train on "
                                "(made by data/build_market_lists.py)")
    group.add_argument("--test_list", default=None,
                       help="list file to evaluate with leave-one-out Recall@K (the classic test_recall)")
    group.add_argument("--image_root", default=None,
                       help="root that list-file paths are relative to (the dataset root)")
    group.add_argument("--synthetic_root", default=in_repo("data", "synthetic"),
                       help="where the embedded synthetic dataset is generated when no data flag is given")
    group.add_argument("--on_bad_image", choices=["raise", "skip"], default="raise",
                       help="a missing or corrupt image stops with an error naming it, or is skipped and counted")
    return group


def add_model_args(parser):
    group = parser.add_argument_group("model")
    group.add_argument("--model", default="ResNet50_vd", type=backbone_name,
                       help="backbone from PaddleClas; choices: %s" % ", ".join(BACKBONES))
    group.add_argument("--embedding_size", type=int, default=0,
                       help="FC layer to this size before the BNNeck; 0 keeps the backbone's channels")
    group.add_argument("--pooling", choices=["avg", "gem"], default="avg", help="global pooling of the feature map")
    group.add_argument("--bnneck", type=str2bool, default=True,
                       help="BN after the embedding, read by the classifier and retrieval (False: the embedding "
                            "itself, as torchreid's OSNet is trained)")
    group.add_argument("--head", choices=HEADS, default="global",
                       help="global: pooling + BNNeck (the default); pcb: --num_parts horizontal stripes of the "
                            "stride-1 map, each reduced to %d with its own classifier; mgn: the multiple "
                            "granularity network (a global and two part branches, 8 features of %d); see "
                            "docs/training.md" % (PART_DIM, PART_DIM))
    group.add_argument("--num_parts", type=int, default=DEFAULT_NUM_PARTS, help="PCB's number of stripes")
    group.add_argument("--last_stride", type=int, choices=[1, 2], default=1,
                       help="stride of the last stage; 1 doubles the final feature map (a standard ReID trick)")
    group.add_argument("--image_shape", type=parse_image_shape, default=schema.DEFAULT_IMAGE_SHAPE,
                       help="input C,H,W; 3,256,128 and 3,128,64 are the usual ReID shapes")
    group.add_argument("--use_gpu", type=str2bool, default=False,
                       help="True runs on the GPU; without a CUDA build of Paddle or a visible GPU it falls back "
                            "to CPU with a warning")
    group.add_argument("--fast_depthwise", type=str2bool, default=True,
                       help="swap depthwise convolutions for a numerically equivalent faster formulation on CPU")
    return group


def check_head_args(parser, args):
    """``parser.error`` for head flags that contradict each other or the loss flags, before any work is done."""
    error = head_flag_error(args.head, args.num_parts, args.embedding_size, args.pooling, args.last_stride,
                            args.bnneck)
    if not error and args.head != "global" and getattr(args, "teacher_model", None):
        error = "--teacher_model (distillation) is implemented for --head global only"
    if not error and args.head == "pcb" and getattr(args, "triplet_weight", 0) > 0:
        error = ("--triplet_weight: --head pcb trains its stripes with classifiers only (a stripe can be pure "
                 "background; its distances carry no identity); use --head mgn for a triplet on global features")
    if error:
        parser.error(error)


def add_train_args(parser, pair):
    group = parser.add_argument_group("training")
    group.add_argument("--train_batch_size", type=int, default=64 if not pair else 0,
                       help="images per iteration (per process)" + ("; 0 means --batch_size" if pair else ""))
    if pair:
        group.add_argument("--batch_size", type=int, default=64,
                           help="classic train_pair name for the batch size (P identities x K images)")
    group.add_argument("--test_batch_size", type=int, default=64, help="images per evaluation batch")
    group.add_argument("--class_dim", type=int, default=0,
                       help="number of training classes; 0 takes it from the data (a wrong value is an error)")
    group.add_argument("--lr", type=float, default=0.01 if not pair else 0.0001, help="base learning rate")
    group.add_argument("--lr_strategy", choices=["piecewise_decay", "cosine", "constant"],
                       default="piecewise_decay", help="learning-rate schedule")
    group.add_argument("--lr_steps", default="",
                       help="comma-separated iterations where piecewise_decay multiplies the LR by --lr_decay "
                            "(default: 60%% and 85%% of --total_iter_num)")
    group.add_argument("--lr_decay", type=float, default=0.1, help="piecewise_decay factor")
    group.add_argument("--warmup_iter_num", type=int, default=0, help="linear LR warm-up iterations from 0")
    group.add_argument("--optimizer", choices=["momentum", "adam"], default="momentum" if not pair else "adam",
                       help="Momentum SGD (0.9) or Adam")
    group.add_argument("--weight_decay", type=float, default=5e-4, help="L2 weight decay")
    group.add_argument("--total_iter_num", type=int, default=30000, help="training iterations")
    group.add_argument("--display_iter_step", type=int, default=20, help="log every N iterations")
    group.add_argument("--test_iter_step", type=int, default=0,
                       help="evaluate every N iterations (0: only at the end)")
    group.add_argument("--save_iter_step", type=int, default=0,
                       help="checkpoint every N iterations to --model_save_dir/<model>/<iter> (0: only at the end)")
    group.add_argument("--save_minutes", type=float, default=10.0,
                       help="also checkpoint whenever this many minutes passed since the last checkpoint, so a crash "
                            "loses at most that much training (0: only --save_iter_step); SIGTERM and Ctrl-C "
                            "always save a resumable checkpoint before stopping")
    group.add_argument("--overwrite", type=str2bool, default=False,
                       help="True deletes a previous run in <model_save_dir>/<model> and starts over; without it "
                            "such a directory is refused unless --checkpoint resumes it")
    group.add_argument("--model_save_dir", default=in_repo("output" if not pair else "save_pair_model"),
                       help="checkpoints go to <model_save_dir>/<model>/<iter>, with a 'latest' link")
    group.add_argument("--pretrained_model", default=None,
                       help="initial weights: a PaddleClas .pdparams, a Paddle 1.x parameter directory, or a "
                            "paddle-reid checkpoint (what no longer fits is reported and skipped)")
    group.add_argument("--freeze_stages", type=int, default=0,
                       help="cheaper training, changes the result: the first N backbone stages (stage k runs at "
                            "output stride 2^k) keep their loaded weights and BN statistics and get no backward "
                            "pass; pass the same value when resuming")
    group.add_argument("--cache_frozen", type=str2bool, default=False,
                       help="with --freeze_stages: compute the frozen stages' output of every training image and "
                            "its mirror image once, then train from memory (needs --pad 0 --erase_prob 0)")
    group.add_argument("--checkpoint", default=None, type=checkpoint_path,
                       help="resume exactly from a checkpoint directory (weights, optimiser, LR schedule, "
                            "iteration, sampler)")
    group.add_argument("--seed", type=int, default=0, help="seed for initialisation, sampling and augmentation")
    group.add_argument("--use_visualdl", type=str2bool, default=False,
                       help="True also writes the scalars of train_log.jsonl to <model_save_dir>/<model>/visualdl "
                            "for PaddlePaddle's VisualDL dashboard (needs `pip install visualdl`, not in "
                            "requirements.txt)")
    group.add_argument("--samples_each_class", type=int, default=4 if pair else 0,
                       help="K images per identity in each batch (P x K sampler); 0 samples images uniformly")
    group.add_argument("--margin", type=float, default=0.1 if pair else 0.3,
                       help="margin of the triplet / quadruplet losses")
    group.add_argument("--cache_images", type=str2bool, default=True,
                       help="keep decoded, resized images in memory so decoding disappears from training time")
    group.add_argument("--loader_threads", type=int, default=2, help="threads that decode and augment batches")
    group.add_argument("--prefetch_batches", type=int, default=4,
                       help="batches assembled ahead by a background thread while the step runs; 0 assembles "
                            "each batch between steps, so decoding never competes with the step for the CPU")
    group.add_argument("--flip_prob", type=float, default=0.5, help="random horizontal flip probability")
    group.add_argument("--pad", type=int, default=10, help="pad + random crop pixels (0 disables)")
    group.add_argument("--erase_prob", type=float, default=0.5, help="random erasing probability (0 disables)")
    group.add_argument("--teacher_model", default=None,
                       help="distil from an exported model (export_model.py: <prefix> or <prefix>.onnx, any input "
                            "size, any embedding width): the student also learns to rank each batch as this "
                            "teacher does; batches are resized to the teacher's input when it differs. Several "
                            "models separated by commas teach as an ensemble (see --teacher_weights)")
    group.add_argument("--teacher_weights", default=None,
                       help="with several --teacher_model: their weights, separated by commas (normalised to "
                            "sum 1; default equal); the ensemble's cosine of two images is the weighted mean of "
                            "the teachers' cosines")
    group.add_argument("--distill_weight", type=float, default=1.0, help="weight of the distillation loss")
    group.add_argument("--distill_temperature", type=float, default=0.1,
                       help="temperature of the neighbour distributions compared by the distillation loss "
                            "(lower: the nearest neighbours count more)")
    return group


def add_elem_loss_args(parser):
    group = parser.add_argument_group("loss")
    group.add_argument("--loss_name", default="softmax", choices=sorted(CLASSIFICATION_LOSSES),
                       help="classification loss on the BNNeck embedding")
    group.add_argument("--label_smoothing", type=float, default=0.1, help="softmax label smoothing epsilon")
    group.add_argument("--arc_scale", type=float, default=80.0, help="ArcMargin scale s")
    group.add_argument("--arc_margin", type=float, default=0.15, help="ArcMargin angular margin m (radians)")
    group.add_argument("--arc_easy_margin", type=str2bool, default=False, help="ArcMargin easy-margin variant")
    group.add_argument("--triplet_weight", type=float, default=0.0,
                       help="add weighted batch-hard triplet (needs --samples_each_class K >= 2)")
    return group


def add_pair_loss_args(parser):
    group = parser.add_argument_group("loss")
    group.add_argument("--loss_name", default="triplet", choices=sorted(PAIR_LOSSES),
                       help="pair loss on P x K batches: triplet = batch-hard triplet; quadruplet = the classic "
                            "implementation of that name, which is Margin Sample Mining (one hardest positive "
                            "and one hardest negative pair over the whole batch); eml = Ensemble Metric Learning "
                            "surrogate; npairs = N-pair loss generalised to K >= 2")
    group.add_argument("--npairs_reg_lambda", type=float, default=0.01, help="n-pairs L2 regularisation")
    group.add_argument("--soft_margin", type=str2bool, default=False, help="soft-margin (softplus) triplet")
    return group
