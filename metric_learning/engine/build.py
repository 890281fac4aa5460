"""Turn parsed command-line flags into a running experiment.

train_elem.py and train_pair.py differ only in their loss and batch sampler;
everything else — which data, which model, how to evaluate, where to save — is
built here once for both, with the optimiser and schedule of
:mod:`metric_learning.engine.solver` and the ``--pretrained_model`` policy of
:mod:`metric_learning.engine.pretrained`.
"""
import os
from dataclasses import dataclass

import numpy as np
import paddle
import paddle.distributed as dist

from metric_learning.config import schema
from metric_learning.data import datasets, images, listfile, market, samplers, synthetic, transforms
from metric_learning.deploy.embedders import format_shape
from metric_learning.engine import dashboard, rundir
from metric_learning.engine.frozen_cache import FrozenOutputCache
from metric_learning.engine.pretrained import load_pretrained_criterion, pretrained_weights_file
from metric_learning.engine.solver import build_optimizer, build_scheduler
from metric_learning.engine.teacher import TeacherEnsemble, load_teacher, parse_teacher_flags
from metric_learning.engine.trainer import BatchStream, RunConfig, Trainer
from metric_learning.errors import ConfigError
from metric_learning.evaluation import evaluator
from metric_learning.models import fastpath, weights
from metric_learning.models.backbones import freeze_stages
from metric_learning.models.heads import check_input_height
from metric_learning.models.reid_net import build_model
from metric_learning.runtime import select_device

# Generated on first use when no dataset is given; small enough for a laptop CPU.
SYNTHETIC_DEFAULTS = dict(num_train_ids=60, num_test_ids=60, num_cameras=6, images_per_id_per_cam=3, seed=0)


@dataclass
class DataSpec:
    """What to train on and how to evaluate, resolved from the data flags."""

    kind: str                    # "protocol" or "list"
    train_paths: list
    train_labels: np.ndarray
    num_classes: int
    protocol: object = None      # market.ReIDProtocol when kind == "protocol"
    test_paths: list = None      # list-file evaluation (leave-one-out Recall@K)
    test_labels: np.ndarray = None
    description: str = ""


def ensure_synthetic(root, log=print):
    """Generate the embedded synthetic dataset at ``root`` unless it is already there."""
    if os.path.isfile(os.path.join(root, synthetic.META_FILE)):
        return root
    log("generating the embedded synthetic dataset in %s ..." % root)
    counts = synthetic.generate(root, **SYNTHETIC_DEFAULTS)
    log("  %s" % ", ".join("%s %d" % kv for kv in sorted(counts.items())))
    return root


def resolve_data(args, log=print):
    """Pick the dataset from the flags: a list file, a Market-1501-style root, or the synthetic default."""
    train_list = getattr(args, "train_list", None)
    if train_list:
        if not args.image_root:
            raise ConfigError("--train_list %s needs --image_root (the folder its paths are relative to)" % train_list)
        records = listfile.read_list(train_list)
        paths, labels = listfile.records_to_paths_labels(records, args.image_root)
        spec = DataSpec("list", paths, labels, int(labels.max()) + 1,
                        description="list %s (%d images, %d classes)" % (train_list, len(paths), int(labels.max()) + 1))
        if args.test_list:
            spec.test_paths, spec.test_labels = listfile.records_to_paths_labels(
                listfile.read_list(args.test_list), args.image_root)
        return spec
    root = args.dataset_root or ensure_synthetic(args.synthetic_root, log)
    protocol = market.load_protocol(root, pattern=args.name_pattern)
    labels, num_classes = market.relabel(protocol.train)
    return DataSpec("protocol", [s.path for s in protocol.train], labels, num_classes, protocol=protocol,
                    description="%s: train %d images / %d ids, query %d, gallery %d"
                                % (root, len(protocol.train), num_classes, len(protocol.query), len(protocol.gallery)))


def check_data_images(spec, on_bad_image, log=print):
    """Decode every image the run will read (train, query and gallery, or the lists) before anything else.

    One error names every bad file (:func:`metric_learning.data.images.check_images`); with ``on_bad_image='skip'``
    the bad files are left out of every split and counted. Returns the spec to train on.
    """
    protocol = spec.protocol
    paths = list(spec.train_paths) + list(spec.test_paths or [])
    if protocol is not None:
        paths += [s.path for s in protocol.query + protocol.gallery]
    bad = {path for path, _ in images.check_images(paths, on_bad_image, log)}
    if not bad:
        return spec

    def good(path):
        return os.path.abspath(path) not in bad

    def readable(paths, labels):
        keep = np.array([good(p) for p in paths], dtype=bool)
        return [p for p, k in zip(paths, keep) if k], labels[keep]

    if not any(good(p) for p in spec.train_paths):
        raise images.BadImageError(spec.train_paths[0], "none of the %d training images can be read"
                                   % len(spec.train_paths))
    spec.train_paths, spec.train_labels = readable(spec.train_paths, spec.train_labels)
    if spec.test_paths is not None:
        spec.test_paths, spec.test_labels = readable(spec.test_paths, spec.test_labels)
    if protocol is not None:
        spec.protocol = protocol._replace(train=[s for s in protocol.train if good(s.path)],
                                          query=[s for s in protocol.query if good(s.path)],
                                          gallery=[s for s in protocol.gallery if good(s.path)])
    return spec


def check_class_dim(class_dim, num_classes, source):
    """``--class_dim`` may be omitted (0); a wrong value is an error that says the right one."""
    if class_dim and class_dim != num_classes:
        raise ConfigError("--class_dim %d does not match the data: %s has %d classes; pass --class_dim %d or omit it"
                          % (class_dim, source, num_classes, num_classes))
    return num_classes


def distributed_context():
    """``(rank, world_size)``; initialises the process group under ``paddle.distributed.launch``."""
    world_size = int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))
    if world_size > 1:
        dist.init_parallel_env()
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def build_evaluator(args, spec, log=print):
    """``evaluate(net) -> metrics`` on the data's test part (protocol: Rank-k/mAP; list: Recall@K)."""
    if spec.kind == "protocol":
        return lambda net: evaluator.evaluate_protocol(
            evaluator.LayerEmbedder(net), spec.protocol, args.image_shape, batch_size=args.test_batch_size)
    if spec.test_paths is None:
        return None
    return lambda net: evaluator.evaluate_recall(
        evaluator.LayerEmbedder(net), spec.test_paths, spec.test_labels, args.image_shape,
        batch_size=args.test_batch_size)


def run_training(args, build_criterion, log=print):
    """Build everything from ``args``, resume if ``--checkpoint`` is given, train; returns final metrics.

    Paddle names optimiser slots after process-global counters (``..._velocity_0``)
    and a checkpoint stores them under those names; a fresh name scope makes a run
    name them identically whether it is the first in its process or not (notebooks).
    """
    with paddle.utils.unique_name.guard():
        trainer = build_trainer(args, build_criterion, log)
        if args.checkpoint:
            trainer.resume(args.checkpoint)
        return trainer.fit()


def build_trainer(args, build_criterion, log=print):
    """Data, model, loss, sampler, optimiser and schedule from ``args``, wired into a ``Trainer``."""
    if args.use_visualdl:
        dashboard.require_visualdl()
    select_device(args.use_gpu)
    rank, world_size = distributed_context()
    if rank == 0:   # the one process that writes the run directory (see Trainer.save)
        rundir.check_can_start(os.path.join(args.model_save_dir, args.model), resume_from=args.checkpoint,
                               overwrite=args.overwrite)
    teacher_specs = parse_teacher_flags(args.teacher_model, args.teacher_weights)
    paddle.seed(args.seed + rank)
    net = build_model(model=args.model, embedding_size=args.embedding_size, pooling=args.pooling,
                      last_stride=args.last_stride, bnneck=args.bnneck, head=args.head, num_parts=args.num_parts)
    check_input_height(net, args.image_shape)   # before the images are decoded
    spec = check_data_images(resolve_data(args, log), args.on_bad_image, log)
    log("data: " + spec.description)
    num_classes = check_class_dim(args.class_dim, spec.num_classes, spec.description.split(" (")[0].split(":")[0])
    transform = transforms.build_transforms(args.image_shape, train=True, flip_prob=args.flip_prob, pad=args.pad,
                                            erase_prob=args.erase_prob)
    dataset = datasets.ImageDataset(spec.train_paths, spec.train_labels, transform, cache=args.cache_images,
                                    on_bad_image=args.on_bad_image)

    if args.pretrained_model and not args.checkpoint:
        weights.load_weights(net, pretrained_weights_file(args.pretrained_model))
    if args.freeze_stages:
        frozen = freeze_stages(net.backbone, args.freeze_stages)
        log("froze the first %d backbone stages: %d parameters" % (args.freeze_stages, frozen))
    if not args.use_gpu and args.fast_depthwise:
        log("fast CPU path: %s (--fast_depthwise False keeps Paddle's kernels)" % (fastpath.accelerate(net),))
        if fastpath.keep_freed_memory():
            log("fast CPU path: freed tensor memory is kept for reuse (glibc malloc without mmap / trim)")
    criterion = build_criterion(args, net, num_classes)
    teacher = None
    if teacher_specs:
        if args.cache_frozen:
            raise ConfigError("--teacher_model needs the training images, which --cache_frozen True replaces by "
                             "cached feature maps; drop one of the two")
        members = [load_teacher(path, args.image_shape, use_gpu=args.use_gpu) for path, _ in teacher_specs]
        for member, (_, weight) in zip(members, teacher_specs):
            resized = "" if tuple(member.input_shape) == tuple(args.image_shape) else (
                ", batches resized to its input %s" % format_shape(member.input_shape))
            share = ", weight %g" % weight if len(members) > 1 else ""
            log("distilling from %s (%d-d embeddings%s%s)" % (member.model_path, member.config["feature_dim"],
                                                             share, resized))
        teacher = members[0] if len(members) == 1 else TeacherEnsemble(members, [w for _, w in teacher_specs])
    if args.pretrained_model and not args.checkpoint:
        load_pretrained_criterion(criterion, args.pretrained_model, log)

    batch_size = args.train_batch_size or getattr(args, "batch_size", 0)
    if args.samples_each_class:
        sampler = samplers.PKBatchSampler(dataset.labels, batch_size, args.samples_each_class, seed=args.seed,
                                          rank=rank, world_size=world_size)
    else:
        sampler = samplers.RandomBatchSampler(len(dataset), batch_size, seed=args.seed, rank=rank,
                                              world_size=world_size)
    scheduler = build_scheduler(args)
    trainable = [p for p in net.parameters() + criterion.parameters() if not p.stop_gradient]
    optimizer = build_optimizer(args, trainable, scheduler)
    run = RunConfig(total_iter_num=args.total_iter_num, model_save_dir=args.model_save_dir, run_name=args.model,
                    display_iter_step=args.display_iter_step, test_iter_step=args.test_iter_step,
                    save_iter_step=args.save_iter_step, save_minutes=args.save_minutes, overwrite=args.overwrite,
                    seed=args.seed + 1000 * rank,
                    loader_threads=args.loader_threads, prefetch_batches=args.prefetch_batches,
                    model_config=schema.training_config(args), rank=rank)
    if args.cache_frozen:
        if not args.freeze_stages or args.pad or args.erase_prob:
            raise ValueError("--cache_frozen True needs --freeze_stages N > 0, --pad 0 and --erase_prob 0 "
                             "(pad + crop and erasing change the frozen stages' input at every visit); got "
                             "--freeze_stages %d --pad %d --erase_prob %g" % (args.freeze_stages, args.pad,
                                                                           args.erase_prob))
        if args.checkpoint:  # resuming: the frozen stages hold the checkpoint's weights, not fresh ones
            weights.load_weights(net, pretrained_weights_file(args.checkpoint))
        cache = FrozenOutputCache(dataset, transforms.build_transforms(args.image_shape, train=False),
                                  net.backbone, flip_prob=args.flip_prob, batch_size=args.test_batch_size, log=log)
        dataset = transform = cache
    stream = BatchStream(dataset, transform, sampler, run.seed, threads=run.loader_threads,
                         prefetch=run.prefetch_batches)
    return Trainer(net, criterion, optimizer, scheduler, stream, run, evaluate_fn=build_evaluator(args, spec, log),
                   log=log, teacher=teacher,
                   mirror=dashboard.VisualDLMirror(run.run_dir) if args.use_visualdl else None)
