"""Charts of a training run and of an evaluation, written as PNG files.

- :func:`plot_training`: the curves of a run's ``train_log.jsonl`` (loss terms, accuracy, learning rate,
  images/s, and the evaluations logged during training) against the iteration; ``python -m
  metric_learning.plot_log RUN_DIR`` writes them.
- :func:`plot_cmc` and :func:`plot_per_camera`: the CMC curve and the per-query-camera Rank-1 / mAP of an
  evaluation result (:func:`metric_learning.evaluation.metrics.evaluate_ranking`); ``eval.py --plot DIR`` writes
  them. The numbers are computed there; this module only draws them.

Figures are built with matplotlib's object-oriented ``Figure``, never pyplot: nothing here selects a backend or
keeps a figure alive, so the same code runs headless (matplotlib renders PNG files with Agg) and in a notebook,
which shows the written file.
"""
import os

import numpy as np

from metric_learning.engine.rundir import log_scalars

#: the CMC curve runs from Rank-1 to this rank (eval.py --plot asks the metrics for each of them)
CMC_MAX_RANK = 50
#: evaluation scalars drawn over training, when the log has them (protocol runs, or list-file Recall@1)
TRAINING_EVAL_CURVES = ("rank1", "mAP", "mINP", "recall@1")
FIGURE_DPI = 110
PANEL_HEIGHT = 2.5   # inches per panel of the training curves


def training_series(records):
    """``{tag: (iterations, values)}`` of every scalar in the log records (tags of
    :func:`metric_learning.engine.rundir.log_scalars`, e.g. ``train/loss``, ``eval/mAP``), by iteration.

    A later record for an iteration replaces an earlier one (an evaluation logged twice, a resumed run).
    """
    by_tag = {}
    for record in records:
        for tag, value in log_scalars(record).items():
            by_tag.setdefault(tag, {})[int(record["iter"])] = value
    return {tag: (np.array(sorted(points), np.int64), np.array([points[i] for i in sorted(points)], np.float64))
            for tag, points in by_tag.items()}


def training_panels(series):
    """The panels of :func:`plot_training`, each ``(title, y label, [(curve label, iterations, values)])``;
    panels without data are left out. Evaluation scalars are drawn in percent."""
    def curves(tags, scale=1.0):
        return [(tag.split("/", 1)[1], series[tag][0], scale * series[tag][1]) for tag in tags if tag in series]

    # the total first, then its terms
    losses = sorted((tag for tag in series if tag.startswith("train/") and tag.endswith("loss")),
                    key=lambda tag: (tag != "train/loss", tag))
    panels = [("loss terms", "loss", curves(losses)),
              ("training accuracy", "accuracy", curves(["train/acc"])),
              ("learning rate", "learning rate", curves(["train/lr"])),
              ("training speed", "images/s", curves(["train/images_per_s"])),
              ("evaluation", "%", curves(["eval/" + name for name in TRAINING_EVAL_CURVES], 100.0))]
    return [panel for panel in panels if panel[2]]


def _save(figure, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=FIGURE_DPI)
    return path


def _figure(size):
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained")


def plot_training(records, path, title=""):
    """Write the training curves of ``records`` (:func:`metric_learning.engine.rundir.read_log`) to ``path``."""
    panels = training_panels(training_series(records))
    if not panels:
        raise ValueError("the log has no progress or evaluation records to plot%s" % (title and ": " + title))
    figure = _figure((8, PANEL_HEIGHT * len(panels)))
    axes = np.atleast_1d(figure.subplots(len(panels), 1, sharex=True))
    for ax, (name, ylabel, panel_curves) in zip(axes, panels):
        for label, iterations, values in panel_curves:
            ax.plot(iterations, values, marker="o" if len(iterations) < 30 else None, markersize=3, label=label)
        ax.set_title(name, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if len(panel_curves) > 1:
            ax.legend(fontsize=8)
    axes[-1].set_xlabel("iteration")
    if title:
        figure.suptitle(title, fontsize=10)
    return _save(figure, path)


def cmc_curve(result):
    """``(ranks, CMC)``: the ``rank<k>`` entries of an evaluation result, by rank, as arrays."""
    ranks = sorted(int(key[4:]) for key in result if key.startswith("rank") and key[4:].isdigit())
    if not ranks:
        raise ValueError("the evaluation result has no rank<k> entries to draw a CMC curve from")
    return np.array(ranks, np.int64), np.array([result["rank%d" % k] for k in ranks], np.float64)


def plot_cmc(result, path, label="all queries"):
    """Write the CMC curve (matching rate in percent against rank) of an evaluation result to ``path``."""
    ranks, cmc = cmc_curve(result)
    figure = _figure((6, 4))
    ax = figure.subplots()
    ax.plot(ranks, 100 * cmc, marker="o", markersize=3, label="%s (Rank-1 %.2f%%, mAP %.2f%%)"
            % (label, 100 * result["rank1"], 100 * result["mAP"]))
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_xlim(1, ranks[-1])
    ax.set_ylim(max(0.0, 100 * cmc[0] - 5), 100.5)
    ax.set_title("CMC, %d queries against %d gallery images" % (result["num_valid_query"], result["num_gallery"]),
                 fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(figure, path)


def per_camera_bars(result):
    """``(camera names, Rank-1, mAP, scored queries)`` of an evaluation with a per-camera breakdown; a camera
    whose queries all lack a true match has NaN scores."""
    cameras = result.get("per_camera")
    if not cameras:
        raise ValueError("the evaluation result has no per-camera breakdown (evaluate with per_camera=True)")
    names = sorted(cameras)

    def column(key):
        return np.array([np.nan if cameras[name][key] is None else cameras[name][key] for name in names], np.float64)

    return names, column("rank1"), column("mAP"), np.array([cameras[n]["num_valid_query"] for n in names], np.int64)


def plot_per_camera(result, path):
    """Write a bar chart of Rank-1 and mAP by query camera (percent), with the overall values as lines."""
    names, rank1, mean_ap, scored = per_camera_bars(result)
    figure = _figure((max(5.0, 0.9 * len(names) + 2), 4))
    ax = figure.subplots()
    x = np.arange(len(names))
    for offset, values, label, overall in ((-0.2, rank1, "Rank-1", result["rank1"]), (0.2, mean_ap, "mAP",
                                                                                        result["mAP"])):
        bars = ax.bar(x + offset, 100 * values, width=0.4, label=label)
        ax.axhline(100 * overall, color=bars.patches[0].get_facecolor(), linestyle="--", linewidth=1)
    ax.set_xticks(x, ["%s\n%d queries" % (name, count) for name, count in zip(names, scored)], fontsize=8)
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.set_title("by query camera (dashed: all queries)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(figure, path)
