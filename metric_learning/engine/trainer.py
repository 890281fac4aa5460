"""The training loop shared by train_elem.py and train_pair.py.

What it owns: batches (exactly reproducible), the optimisation step, periodic
evaluation, atomic checkpoints, exact resume, divergence stop, progress and a
JSON-lines log. What it does not own: which model, loss, sampler or optimiser —
the scripts build those and hand them in.

Nothing is lost: besides every ``save_iter_step`` iterations, a checkpoint is
saved whenever ``save_minutes`` have passed since the last one, and SIGTERM or
Ctrl-C (SIGINT) saves one after the current iteration, then stops with
:class:`TrainingInterrupted` (a second signal stops at once). The run directory
(:mod:`metric_learning.engine.rundir`) is locked while training and marked FAILED with
the reason, or removed when nothing was saved, if the run does not finish.

Reproducibility: the augmentation of image ``j`` of the batch at iteration ``i``
is drawn from ``np.random.default_rng((seed, i, j))``, and the batch's indices
come from a sampler whose position is checkpointed. A resumed run therefore sees
the very same pixels as an uninterrupted one, whatever the number of loader
threads, without having to serialise any RNG.
"""
import contextlib
import json
import math
import os
import queue
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import paddle

from metric_learning.engine.rundir import RunDir
from metric_learning.errors import TrainingDiverged, TrainingInterrupted
from metric_learning.models import checkpoint as ckpt

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class RunConfig:
    total_iter_num: int
    model_save_dir: str
    run_name: str
    display_iter_step: int = 20
    test_iter_step: int = 0
    save_iter_step: int = 0
    save_minutes: float = 10.0
    overwrite: bool = False
    seed: int = 0
    loader_threads: int = 2
    prefetch_batches: int = 4
    model_config: dict = field(default_factory=dict)
    rank: int = 0

    @property
    def run_dir(self):
        return os.path.join(self.model_save_dir, self.run_name)


class TrainStep(paddle.nn.Layer):
    """Wraps network + criterion in one Layer so DataParallel syncs both."""

    def __init__(self, net, criterion):
        super().__init__()
        self.net = net
        self.criterion = criterion

    def forward(self, images, labels, teacher_features=None):
        feat_before_bn, feat_after_bn = self.net.forward_features(images)
        return self.criterion(feat_before_bn, feat_after_bn, labels, teacher_features)


class BatchStream:
    """Iterates training batches (images NCHW float32, labels int64) from iteration ``start``.

    ``dataset`` must provide ``load_image(i)`` (decoded HWC uint8 RGB, possibly cached)
    and ``labels``; ``batch_sampler`` must provide iteration over index lists,
    ``state_dict()`` and ``set_state_dict()``. Batches are assembled by a small
    thread pool (OpenCV and numpy release the GIL) and, unless ``prefetch`` is 0,
    prefetched by one background thread so the training step never waits on decoding.
    """

    def __init__(self, dataset, transform, batch_sampler, seed, threads=2, prefetch=4):
        self.dataset = dataset
        self.transform = transform
        self.sampler = batch_sampler
        self.seed = seed
        self.pool = ThreadPoolExecutor(max(1, threads))
        self.prefetch = max(0, prefetch)

    def _make_batch(self, iteration, indices):
        def one(j_index):
            j, index = j_index
            rng = np.random.default_rng((self.seed, iteration, j))
            return self.transform(self.dataset.load_image(index), rng)

        images = list(self.pool.map(one, enumerate(indices)))
        labels = np.asarray([self.dataset.labels[i] for i in indices], dtype="int64")
        return np.stack(images).astype("float32", copy=False), labels

    def _index_batches(self):
        while True:
            for indices in self.sampler:
                yield list(indices)

    def _batches(self, start_iteration, stop_iteration):
        batches = self._index_batches()
        for iteration in range(start_iteration, stop_iteration):
            indices = next(batches)
            state = self.sampler.state_dict()
            yield (iteration,) + self._make_batch(iteration, indices) + (state,)

    def iterate(self, start_iteration, stop_iteration):
        """Yield ``(iteration, images, labels, sampler_state_after)`` for start <= iteration < stop.

        With ``prefetch`` 0 each batch is assembled when asked for, while the training step is idle, so the
        loader threads never compete with the step's compute threads for the CPU.
        """
        if self.prefetch == 0:
            yield from self._batches(start_iteration, stop_iteration)
            return
        out = queue.Queue(self.prefetch)
        stop_flag = threading.Event()

        def produce():
            try:
                for item in self._batches(start_iteration, stop_iteration):
                    while not stop_flag.is_set():
                        try:
                            out.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop_flag.is_set():
                        return
                out.put(None)
            except BaseException as error:  # surfaced in the consumer with its traceback
                out.put(error)

        worker = threading.Thread(target=produce, daemon=True)
        worker.start()
        try:
            while True:
                item = out.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop_flag.set()
            worker.join(timeout=5)


class Trainer:
    def __init__(self, net, criterion, optimizer, scheduler, stream, config, evaluate_fn=None, log=print,
                 teacher=None, mirror=None):
        """``teacher``: for distillation, a callable that embeds a batch (NCHW float32 array -> [N, D] array).
        ``mirror``: also given every log record, ``mirror.write(record)``, inside ``with mirror:`` while training
        (:class:`metric_learning.engine.dashboard.VisualDLMirror`)."""
        self.net = net
        self.criterion = criterion
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.stream = stream
        self.config = config
        self.evaluate_fn = evaluate_fn
        self.log = log
        self.teacher = teacher
        self.mirror = mirror
        self.iteration = 0
        self.last_checkpoint = None
        self.resumed_from = None   # the iteration of the checkpoint this run continues, if any
        self.eval_seconds = 0.0    # spent in evaluations, kept out of the training speed reported at the end
        self.step_layer = TrainStep(net, criterion)
        if paddle.distributed.get_world_size() > 1:
            self.step_layer = paddle.DataParallel(self.step_layer)
        self.is_main = config.rank == 0

    # ----- state -------------------------------------------------------------
    def resume(self, path):
        """Restore weights, optimiser, LR schedule, iteration and sampler from a checkpoint."""
        state = ckpt.read_training_state(path)
        ckpt.assign_state(self.net, state["model"], state["path"])
        ckpt.assign_state(self.criterion, state["criterion"], state["path"])
        self.optimizer.set_state_dict(state["optimizer"])
        trainer_state = state["trainer"]
        self.scheduler.set_state_dict(trainer_state["scheduler"])
        self.stream.sampler.set_state_dict(trainer_state["sampler"])
        self.iteration = trainer_state["iteration"]
        self.last_checkpoint = state["path"]
        self.resumed_from = self.iteration
        self.log("resumed from %s at iteration %d" % (state["path"], self.iteration))

    def save(self, sampler_state):
        if not self.is_main:
            return None
        directory = os.path.join(self.config.run_dir, str(self.iteration))
        trainer_state = {
            "iteration": self.iteration,
            "scheduler": self.scheduler.state_dict(),
            "sampler": sampler_state,
            "seed": self.config.seed,
        }
        ckpt.save_checkpoint(directory, self.net.state_dict(), self.criterion.state_dict(),
                             self.optimizer.state_dict(), trainer_state, self.config.model_config)
        ckpt.point_latest(directory)
        self.last_checkpoint = directory
        return directory

    # ----- loop --------------------------------------------------------------
    def fit(self):
        """Train until ``total_iter_num``; returns the last evaluation metrics (or {})."""
        run_dir = RunDir(self.config.run_dir)
        if self.is_main:
            run_dir.acquire(self.last_checkpoint if self.resumed_from is not None else None, self.resumed_from,
                            self.config.overwrite)
        stop = {"signum": None}
        handlers = self._install_stop_handlers(stop)
        try:
            with run_dir.open_log() if self.is_main else open(os.devnull, "w") as log_file, \
                    self.mirror or contextlib.nullcontext():
                metrics = self._loop(log_file, stop)
        except BaseException as error:
            if self.is_main:
                reason = str(error) if isinstance(error, (TrainingInterrupted, TrainingDiverged)) else \
                    "%s at iteration %d: %s" % (type(error).__name__, self.iteration, error)
                marker = run_dir.fail(reason, resume_from=self.last_checkpoint)
                if marker and not isinstance(error, TrainingInterrupted):
                    self.log("run marked failed: %s" % marker)
            raise
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            run_dir.release()
        return metrics

    @staticmethod
    def _install_stop_handlers(stop):
        """SIGTERM / SIGINT ask the loop to save and stop; a second one stops at once. Returns the old handlers."""
        if threading.current_thread() is not threading.main_thread():
            return {}   # signal handlers can only be set from the main thread

        def request_stop(signum, frame):
            if stop["signum"] is not None:
                raise KeyboardInterrupt
            stop["signum"] = signum

        return {signum: signal.signal(signum, request_stop) for signum in STOP_SIGNALS}

    def _loop(self, log_file, stop):
        cfg = self.config
        metrics = {}
        sampler_state = self.stream.sampler.state_dict()
        self.step_layer.train()
        window_start, window_images, window_wait = time.time(), 0, 0.0
        run_start, run_images, eval_seconds_before = time.time(), 0, self.eval_seconds
        last_save = time.time()
        batches = self.stream.iterate(self.iteration, cfg.total_iter_num)
        while True:
            wait_start = time.perf_counter()
            batch = next(batches, None)
            window_wait += time.perf_counter() - wait_start
            if batch is None:
                break
            iteration, images, labels, sampler_state = batch
            lr = self.optimizer.get_lr()
            result = self.train_step(images, labels, iteration)
            self.iteration = iteration + 1
            window_images += len(labels)
            run_images += len(labels)

            if self.iteration % cfg.display_iter_step == 0 or self.iteration == cfg.total_iter_num:
                now = time.time()
                speed = window_images / max(now - window_start, 1e-9)
                remaining = (cfg.total_iter_num - self.iteration) * len(labels) / max(speed, 1e-9)
                # data_wait: the share of the window the step spent waiting for its batch
                record = {"iter": self.iteration, "lr": lr, "images_per_s": round(speed, 2),
                          "data_wait": round(window_wait / max(now - window_start, 1e-9), 4),
                          "eta_s": round(remaining, 1)}
                record.update({k: round(float(v), 5) for k, v in result.items() if k != "logits"})
                self._report(record, log_file)
                window_start, window_images, window_wait = now, 0, 0.0
            if cfg.test_iter_step and self.evaluate_fn and self.iteration % cfg.test_iter_step == 0:
                metrics = self._evaluate(log_file)
            if stop["signum"] is not None:
                self.save(sampler_state)
                name = signal.Signals(stop["signum"]).name
                raise TrainingInterrupted("stopped by %s at iteration %d; checkpoint %s holds everything, resume "
                                          "with --checkpoint %s" % (name, self.iteration, self.last_checkpoint,
                                                                    self.last_checkpoint), stop["signum"])
            periodic = cfg.save_iter_step and self.iteration % cfg.save_iter_step == 0
            if (periodic or (cfg.save_minutes and time.time() - last_save >= 60 * cfg.save_minutes)) \
                    and self.iteration < cfg.total_iter_num:
                self.save(sampler_state)
                last_save = time.time()
        self.save(sampler_state)   # before the final evaluation, so a failing evaluation loses no training
        if self.evaluate_fn and (not cfg.test_iter_step or self.iteration % cfg.test_iter_step):
            metrics = self._evaluate(log_file)
        evaluating = self.eval_seconds - eval_seconds_before
        training = max(time.time() - run_start - evaluating, 1e-9)
        if self.is_main and run_images:
            self.log("trained %d images in %.1f s (%.1f images/s), evaluated in %.1f s more; checkpoint: %s"
                     % (run_images, training, run_images / training, evaluating, self.last_checkpoint))
        return metrics

    def train_step(self, images, labels, iteration):
        """One optimisation step on a batch (NCHW float32 and int64 arrays); returns the loss terms."""
        teacher_features = None if self.teacher is None else paddle.to_tensor(self.teacher(images))
        result = self.step_layer(paddle.to_tensor(images), paddle.to_tensor(labels), teacher_features)
        loss = result["loss"]
        loss_value = float(loss)
        if not math.isfinite(loss_value):
            raise TrainingDiverged(
                "loss became %s at iteration %d; training stopped. Last good checkpoint: %s. "
                "Lower --lr or check the data." % (loss_value, iteration, self.last_checkpoint or "none saved yet"))
        loss.backward()
        self.optimizer.step()
        self.optimizer.clear_grad()
        self.scheduler.step()
        return result

    def _evaluate(self, log_file):
        if not self.is_main:
            return {}
        self.net.eval()
        start = time.time()
        try:
            metrics = self.evaluate_fn(self.net)
        finally:
            self.step_layer.train()
            self.eval_seconds += time.time() - start
        self._write_record({"iter": self.iteration, "eval": metrics}, log_file)
        self.log("iter %d eval: %s" % (self.iteration, "  ".join(
            "%s %.4f" % (k, v) if isinstance(v, float) else "%s %s" % (k, v) for k, v in metrics.items())))
        return metrics

    def _report(self, record, log_file):
        if not self.is_main:
            return
        self._write_record(record, log_file)
        parts = ["iter %d/%d" % (record["iter"], self.config.total_iter_num)]
        parts += ["%s %.4f" % (k, v) for k, v in record.items()
                  if k not in ("iter", "lr", "images_per_s", "data_wait", "eta_s")]
        parts += ["lr %.6g" % record["lr"], "%.1f img/s" % record["images_per_s"],
                  "data wait %.1f%%" % (100 * record["data_wait"]),
                  "ETA %s" % time.strftime("%H:%M:%S", time.gmtime(record["eta_s"]))]
        self.log("  ".join(parts))

    def _write_record(self, record, log_file):
        log_file.write(json.dumps(record) + "\n")
        log_file.flush()
        if self.mirror:
            self.mirror.write(record)
