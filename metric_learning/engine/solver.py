"""The optimiser and the learning-rate schedule of a training run, from its flags.

``--lr_strategy``: piecewise_decay (``--lr`` times ``--lr_decay`` at each of ``--lr_steps``), cosine or constant,
after an optional linear warm-up (``--warmup_iter_num``). ``--optimizer``: Momentum SGD (0.9) or Adam, with L2
weight decay ``--weight_decay``.
"""
import paddle

from metric_learning.errors import ConfigError


def parse_lr_steps(text, total_iter_num):
    if not text:
        return [int(total_iter_num * 0.6), int(total_iter_num * 0.85)]
    try:
        steps = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ConfigError("--lr_steps must be comma-separated iteration numbers, got %r" % text) from None
    if steps != sorted(steps) or any(s <= 0 for s in steps):
        raise ConfigError("--lr_steps must be increasing positive iterations, got %r" % text)
    return steps


def build_scheduler(args):
    lr = paddle.optimizer.lr
    if args.lr_strategy == "piecewise_decay":
        steps = parse_lr_steps(args.lr_steps, args.total_iter_num)
        values = [args.lr * args.lr_decay ** i for i in range(len(steps) + 1)]
        schedule = lr.PiecewiseDecay(boundaries=steps, values=values)
    elif args.lr_strategy == "cosine":
        schedule = lr.CosineAnnealingDecay(learning_rate=args.lr, T_max=max(1, args.total_iter_num))
    else:
        schedule = lr.LambdaDecay(learning_rate=args.lr, lr_lambda=lambda _: 1.0)
    if args.warmup_iter_num > 0:
        schedule = lr.LinearWarmup(schedule, warmup_steps=args.warmup_iter_num, start_lr=0.0, end_lr=args.lr)
    return schedule


def build_optimizer(args, parameters, scheduler):
    decay = paddle.regularizer.L2Decay(args.weight_decay) if args.weight_decay > 0 else None
    if args.optimizer == "adam":
        return paddle.optimizer.Adam(learning_rate=scheduler, parameters=parameters, weight_decay=decay)
    return paddle.optimizer.Momentum(learning_rate=scheduler, momentum=0.9, parameters=parameters,
                                     weight_decay=decay, use_nesterov=False)
