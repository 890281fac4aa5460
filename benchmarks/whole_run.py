"""Whole-run training throughput beside the model-only step of the same run: where the rest of the time goes.

    python benchmarks/whole_run.py @recipes/market_mobilenetv2.args --iters 100
    python benchmarks/whole_run.py @recipes/market_osnet_x0_25_msmt17.args --iters 100
    python benchmarks/whole_run.py --model MobileNetV3_small_x1_0 --image_shape 3,64,32 --iters 20   # synthetic

Takes every ``train_elem.py`` flag (or a recipe) and builds the trainer exactly as ``train_elem.py`` does
(``build.build_trainer``: data, caches, network, head, loss, optimiser), in one process. Then, round by
round so that a change in machine load hits every set-up alike, it times over ``--iters`` iterations after
``--warmup`` untimed ones:

* ``model only``: ``Trainer.train_step`` again and again on one batch already in memory: forward, loss,
  backward, optimiser and schedule step, nothing else. This is what ``benchmarks/train_speed.py`` measures,
  but with the run's own head, loss and optimiser;
* ``whole run``: ``Trainer.fit``, batches from the real stream (sampler, image or frozen-stage cache, augmentation) with
  the run's ``--prefetch_batches`` (4 unless given), and its logging (no evaluation, no periodic saving);
* ``whole run, prefetch 0``: the same with each batch assembled between steps.

Each row gives images/s (the median over rounds), its ratio to ``model only`` and the share of the time the
step waited for its batch (``data_wait`` in the training log). With ``--cache_images True`` (the default) every
image is decoded before timing, as in a run after its first epoch. Threads: ``OMP_NUM_THREADS`` as training sets it.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def parse_args(argv=None):
    # @recipe files are left to train_elem.py's parser, which reads their '--flag value' lines
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    parser.add_argument("--iters", type=int, default=100, help="timed iterations per set-up and round")
    parser.add_argument("--warmup", type=int, default=10, help="untimed iterations before each timing")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of all set-ups; the median is reported")
    parser.add_argument("-h", "--help", action="store_true")
    own, train_argv = parser.parse_known_args(argv)
    if own.help:
        parser.print_help()
        print("\nEvery other flag (and @recipe files) goes to train_elem.py; see its --help.")
        sys.exit(0)
    if own.iters < 1 or own.warmup < 1:
        parser.error("--iters and --warmup must be >= 1")
    if own.iters % own.warmup:
        parser.error("--iters must be a multiple of --warmup (the log's windows are --warmup iterations)")
    return own, train_argv


def model_only_speed(trainer, batch, warmup, iters):
    _, images, labels, _ = batch
    for iteration in range(warmup):
        trainer.train_step(images, labels, iteration)
    start = time.perf_counter()
    for iteration in range(iters):
        trainer.train_step(images, labels, iteration)
    return iters * len(labels) / (time.perf_counter() - start), 0.0


def whole_run_speed(trainer, prefetch, warmup, iters, directory):
    """images/s and data-wait share of ``iters`` logged iterations of ``Trainer.fit`` after ``warmup``."""
    config = trainer.config
    config.model_save_dir = tempfile.mkdtemp(dir=directory)
    config.total_iter_num, config.display_iter_step = warmup + iters, warmup
    config.save_iter_step = config.test_iter_step = config.save_minutes = 0
    trainer.stream.prefetch = prefetch
    trainer.iteration = 0
    trainer.fit()
    from metric_learning.engine import rundir

    windows = [record for record in rundir.read_log(config.run_dir) if "images_per_s" in record][1:]  # [0]: warm-up
    seconds = sum(config.display_iter_step / record["images_per_s"] for record in windows)
    waited = sum(record["data_wait"] * config.display_iter_step / record["images_per_s"] for record in windows)
    return len(windows) * config.display_iter_step / seconds, waited / seconds


def main(argv=None):
    own, train_argv = parse_args(argv)
    from metric_learning import train_elem
    from metric_learning.engine import build

    args = train_elem.parse_args(train_argv)
    with tempfile.TemporaryDirectory() as directory:
        args.model_save_dir = directory
        trainer = build.build_trainer(args, train_elem.build_criterion, log=lambda *_: None)
        trainer.evaluate_fn = None
        trainer.log = lambda *_: None
        if getattr(trainer.stream.dataset, "cache", False):
            trainer.stream.dataset.fill_cache()   # a run's steady state: after its first epoch every image is decoded
        batch_size = args.train_batch_size
        batch = next(iter(trainer.stream.iterate(0, 1)))
        setups = {
            "model only": lambda: model_only_speed(trainer, batch, own.warmup, own.iters),
            "whole run, prefetch %d" % args.prefetch_batches: lambda: whole_run_speed(
                trainer, args.prefetch_batches, own.warmup, own.iters, directory),
            "whole run, prefetch 0": lambda: whole_run_speed(trainer, 0, own.warmup, own.iters, directory),
        }
        results = {name: [] for name in setups}
        for _ in range(own.rounds):
            for name, measure in setups.items():
                results[name].append(measure())
    print("%s %s, batch %d, %s threads, %d rounds x %d iterations (after %d), load average %.1f"
          % (args.model, "x".join(str(v) for v in args.image_shape[1:]), batch_size,
             os.environ.get("OMP_NUM_THREADS"), own.rounds, own.iters, own.warmup, os.getloadavg()[0]))
    print("| set-up | images/s | x model only | data wait |")
    print("|---|---|---|---|")
    model_only = statistics.median(speed for speed, _ in results["model only"])
    for name, values in results.items():
        speed = statistics.median(speed for speed, _ in values)
        wait = statistics.median(wait for _, wait in values)
        print("| %s | %.1f | %.2f | %.1f%% |" % (name, speed, speed / model_only, 100 * wait))
    return 0


if __name__ == "__main__":
    sys.exit(main())
