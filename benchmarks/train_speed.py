"""Training speed on CPU: images/s of one forward + backward + Momentum step, Paddle vs PyTorch.

For each backbone and input size it times each set-up in its own fresh
process (so allocator state and imported libraries cannot leak between them),
interleaved round by round so a busy machine slows all of them alike, and
reports the median over rounds:

* ``eager``:   plain PaddleClas network in eager mode (the previous baseline);
* ``default``: the same network after ``fastpath.accelerate`` and
  ``fastpath.keep_freed_memory``, as training runs it (``--fast_depthwise True``,
  the default);
* ``frozen``:  ``default`` with the first ``--freeze_stages`` stages frozen
  (``train_elem.py --freeze_stages``: no backward pass through them);
* ``cached``:  ``frozen`` starting from the frozen stages' stored output
  (``--cache_frozen True``: no forward pass through them either);
* ``torch``:   the same network in PyTorch: MobileNetV2 written here, and the
  OSNet widths from torchreid's own code (``benchmarks/torchreid_peer.py``),
  with its fc-512 embedding before the classifier. A benchmark-only extra,
  ``pip install torch==2.13.0`` (and ``pip install --no-deps torchreid==0.2.5``
  for OSNet); the column is empty where they are missing.

Every network is the backbone as ReIDNet cuts it (``build_backbone``, last stride
2 as in ImageNet training) + global average pool + 751-way FC, trained with
softmax cross entropy and Momentum(0.9) on random data.
Threads: ``OMP_NUM_THREADS`` (default 2) and ``MKL_DEBUG_CPU_TYPE=5``.

    python benchmarks/train_speed.py             # full table (slow: ~30 min on 2 cores)
    python benchmarks/train_speed.py --quick     # MobileNetV2 at 128x64 only, fewer steps

The last line reads ``MobileNetV2 128x64 paddle=<img/s> torch=<img/s> ratio=<paddle/torch>``.
"""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

import torchreid_peer  # beside this script; it imports torch only when a network is built

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ["MobileNetV2", "MobileNetV3_large_x1_0", "MobileNetV3_small_x1_0", "GhostNet_x1_0",
          "PPLCNet_x1_0", "ResNet50_vd"]
SHAPES = ["128x64", "256x128"]
CLASSES = 751


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated PaddleClas backbones")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated HxW input sizes")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--iters", type=int, default=5, help="timed steps per run (after warm-up)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs per set-up; the median is reported")
    parser.add_argument("--threads", default=os.environ.get("OMP_NUM_THREADS", "2"))
    parser.add_argument("--freeze_stages", type=int, default=3,
                        help="stages frozen in the 'frozen' column (train_elem.py --freeze_stages); 0 drops it")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch column")
    parser.add_argument("--quick", action="store_true",
                        help="MobileNetV2 at 128x64 only, 3 steps, 1 round (a smoke run)")
    parser.add_argument("--worker", nargs=3, metavar=("SETUP", "MODEL", "SHAPE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.shapes, args.iters, args.warmup, args.rounds = "MobileNetV2", "128x64", 3, 1, 1
    return args


# ----------------------------------------------------------------------------- workers

def _time_steps(step, warmup, iters):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paddle_worker(setup, model, height, width, args):
    sys.path.insert(0, ROOT)
    import metric_learning  # noqa: F401  (sets thread/MKL defaults before paddle loads)
    from metric_learning.models import fastpath
    from metric_learning.models.backbones import build_backbone, freeze_stages
    import paddle
    import paddle.nn.functional as F

    paddle.seed(0)
    trunk = build_backbone(model, last_stride=2)
    images = paddle.randn([args.batch, 3, height, width])
    if setup in ("frozen", "cached"):
        freeze_stages(trunk, args.freeze_stages)
    if setup == "cached":   # the step starts from the frozen stages' output, as with --cache_frozen
        with paddle.no_grad():
            for unit in trunk.trunk_units[:trunk.num_frozen_units]:
                images = unit(images)
        trunk.frozen_outputs_cached = True
    if setup != "eager":
        fastpath.accelerate(trunk)
        fastpath.keep_freed_memory()
    net = paddle.nn.Sequential(trunk, paddle.nn.AdaptiveAvgPool2D(1), paddle.nn.Flatten(),
                               paddle.nn.Linear(trunk.out_channels, CLASSES))
    net.train()
    opt = paddle.optimizer.Momentum(learning_rate=0.01, momentum=0.9,
                                    parameters=[p for p in net.parameters() if not p.stop_gradient])
    labels = paddle.randint(0, CLASSES, [args.batch])

    def step():
        loss = F.cross_entropy(net(images), labels)
        loss.backward()
        opt.step()
        opt.clear_grad()
        float(loss)

    return _time_steps(step, args.warmup, args.iters)


def torch_mobilenet_v2(classes):
    """PaddleClas' MobileNetV2 (its t=1 first block keeps the 1x1 expand conv) in PyTorch."""
    from torch import nn

    def conv_bn(cin, cout, kernel, stride=1, groups=1, relu6=True):
        layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(cout)]
        return nn.Sequential(*layers, nn.ReLU6()) if relu6 else nn.Sequential(*layers)

    class InvertedResidual(nn.Module):
        def __init__(self, cin, cout, stride, expand):
            super().__init__()
            hidden = cin * expand
            self.body = nn.Sequential(conv_bn(cin, hidden, 1), conv_bn(hidden, hidden, 3, stride, hidden),
                                      conv_bn(hidden, cout, 1, relu6=False))
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.body(x) if self.residual else self.body(x)

    class MobileNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            layers, cin = [conv_bn(3, 32, 3, 2)], 32
            for expand, cout, repeats, stride in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                                                  (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
                for i in range(repeats):
                    layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                    cin = cout
            self.features = nn.Sequential(*layers, conv_bn(cin, 1280, 1))
            self.fc = nn.Linear(1280, classes)

        def forward(self, x):
            return self.fc(self.features(x).mean((2, 3)))

    return MobileNetV2()


def has_torch_version(model):
    if importlib.util.find_spec("torch") is None:
        return False
    if model == "MobileNetV2":
        return True
    return model.startswith("OSNet_x") and torchreid_peer.peer_available()


def torch_network(model):
    if model == "MobileNetV2":
        return torch_mobilenet_v2(CLASSES)
    return torchreid_peer.build_osnet(model, num_classes=CLASSES)


def torch_worker(model, height, width, args):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    net = torch_network(model).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(args.batch, 3, height, width)
    labels = torch.randint(0, CLASSES, (args.batch,))

    def step():
        loss = F.cross_entropy(net(images), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        float(loss.detach())

    return _time_steps(step, args.warmup, args.iters)


def run_worker(args):
    setup, model, shape = args.worker
    height, width = (int(v) for v in shape.split("x"))
    if setup == "torch":
        seconds = torch_worker(model, height, width, args)
    else:
        seconds = paddle_worker(setup, model, height, width, args)
    print(json.dumps({"images_per_s": args.batch / seconds}))


# ----------------------------------------------------------------------------- driver

def measure(setup, model, shape, args):
    """images/s of one set-up, measured in a fresh process; None if that process failed."""
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_DEBUG_CPU_TYPE="5",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", setup, model, shape,
           "--batch", str(args.batch), "--iters", str(args.iters), "--warmup", str(args.warmup)]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if run.returncode != 0:
        sys.stderr.write("%s %s %s failed:\n%s\n" % (setup, model, shape, run.stderr[-2000:]))
        return None
    return json.loads(run.stdout.strip().splitlines()[-1])["images_per_s"]


def _fmt(value, spec="%.1f"):
    return "n/a" if value is None else spec % value


def _ratio(a, b):
    return None if a is None or b is None else a / b


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return run_worker(args)
    models = [m for m in args.models.split(",") if m]
    shapes = [s for s in args.shapes.split(",") if s]
    setups = ["eager", "default"] + (["frozen", "cached"] if args.freeze_stages else [])
    cells = [(model, shape) for model in models for shape in shapes]
    results = {(cell, setup): [] for cell in cells for setup in setups + ["torch"]}
    for _ in range(args.rounds):
        for cell in cells:
            todo = setups + (["torch"] if not args.no_torch and has_torch_version(cell[0]) else [])
            for setup in todo:
                value = measure(setup, cell[0], cell[1], args)
                if value is not None:
                    results[(cell, setup)].append(value)

    def median(cell, setup):
        values = results.get((cell, setup))
        return statistics.median(values) if values else None

    print("Training images/s, batch %d, %s threads, median of %d round(s) x %d steps" % (
        args.batch, args.threads, args.rounds, args.iters))
    row = "%-24s %-8s %10s %10s %8s %10s %12s %10s %10s"
    header = row % ("model", "input", "eager", "default", "speedup", "torch", "default/torch",
                    *(("frozen %d" % args.freeze_stages, "cached") if args.freeze_stages else ("", "")))
    print(header)
    print("-" * len(header))
    for cell in cells:
        eager, default, torch_speed, frozen, cached = (
            median(cell, s) for s in ("eager", "default", "torch", "frozen", "cached"))
        print(row % (cell[0], cell[1], _fmt(eager), _fmt(default), _fmt(_ratio(default, eager), "%.2fx"),
                     _fmt(torch_speed), _fmt(_ratio(default, torch_speed), "%.2f"),
                     *((_fmt(frozen), _fmt(cached)) if args.freeze_stages else ("", ""))))
    key = ("MobileNetV2", "128x64")
    paddle_speed, torch_speed = median(key, "default"), median(key, "torch")
    print("MobileNetV2 128x64 paddle=%s torch=%s ratio=%s" % (
        _fmt(paddle_speed), _fmt(torch_speed), _fmt(_ratio(paddle_speed, torch_speed), "%.2f")))


if __name__ == "__main__":
    main()
