"""metric_learning.plots and plot_log.py: the series drawn come from the log and the metrics, worked out by hand."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from metric_learning import plot_log, plots
from metric_learning.engine import rundir
from metric_learning.evaluation import metrics
from conftest import ROOT

# A resumed run's log as the trainer and RunDir write it, with an evaluation logged twice at iteration 30 (the
# later one counts) and a last line cut short by a crash.
LOG_LINES = [
    {"iter": 10, "lr": 0.01, "images_per_s": 50.0, "data_wait": 0.1, "eta_s": 20.0, "acc": 0.25, "loss": 4.0,
     "softmax_loss": 3.0, "triplet_loss": 1.0},
    {"iter": 20, "lr": 0.02, "images_per_s": 60.0, "data_wait": 0.0, "eta_s": 10.0, "acc": 0.5, "loss": 3.0,
     "softmax_loss": 2.5, "triplet_loss": 0.5},
    {"iter": 20, "eval": {"rank1": 0.5, "rank5": 0.75, "rank10": 0.8, "mAP": 0.25, "mINP": 0.1, "num_query": 12,
                          "num_valid_query": 12, "num_skipped_query": 0, "num_gallery": 40, "metric": "cosine",
                          "rerank": None}},
    {"event": "resumed", "iter": 20},
    {"iter": 30, "lr": 0.005, "images_per_s": 40.0, "data_wait": 0.2, "eta_s": 0.0, "acc": 0.75, "loss": 2.0,
     "softmax_loss": 1.75, "triplet_loss": 0.25},
    {"iter": 30, "eval": {"rank1": 0.6, "mAP": 0.3, "mINP": 0.2, "num_query": 12}},
    {"iter": 30, "eval": {"rank1": 0.625, "mAP": 0.375, "mINP": 0.125, "num_query": 12}},
]


@pytest.fixture
def run_dir(tmp_path):
    with open(tmp_path / rundir.LOG_FILE, "w") as f:
        f.writelines(json.dumps(record) + "\n" for record in LOG_LINES)
        f.write('{"iter": 40, "lr": 0.0')
    return tmp_path


def points(series, tag):
    iterations, values = series[tag]
    return iterations.tolist(), values.tolist()


def test_training_series_are_the_logged_numbers_by_iteration(run_dir):
    records = rundir.read_log(str(run_dir))
    assert len(records) == len(LOG_LINES)
    series = plots.training_series(records)
    assert points(series, "train/loss") == ([10, 20, 30], [4.0, 3.0, 2.0])
    assert points(series, "train/triplet_loss") == ([10, 20, 30], [1.0, 0.5, 0.25])
    assert points(series, "train/lr") == ([10, 20, 30], [0.01, 0.02, 0.005])
    assert points(series, "eval/mAP") == ([20, 30], [0.25, 0.375])
    assert points(series, "eval/rank5") == ([20], [0.75])
    assert not [tag for tag in series if tag.startswith("eval/num_") or tag in ("train/iter", "eval/metric")]

    panels = plots.training_panels(series)
    assert [title for title, _, _ in panels] == ["loss terms", "training accuracy", "learning rate",
                                                 "training speed", "evaluation"]
    assert [label for label, _, _ in panels[0][2]] == ["loss", "softmax_loss", "triplet_loss"]
    evaluation = {label: (iterations.tolist(), values.tolist()) for label, iterations, values in panels[-1][2]}
    assert evaluation == {"rank1": ([20, 30], [50.0, 62.5]), "mAP": ([20, 30], [25.0, 37.5]),
                          "mINP": ([20, 30], [10.0, 12.5])}


def test_plot_log_writes_the_curves_beside_the_log(run_dir):
    path = plot_log.main([str(run_dir)])
    assert path == str(run_dir / plot_log.DEFAULT_NAME)
    with Image.open(path) as image:
        # 8 inches wide, five panels high, at the figure's dpi
        assert image.size == (8 * plots.FIGURE_DPI, 5 * plots.PANEL_HEIGHT * plots.FIGURE_DPI)
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 10          # axes, curves and labels, not a blank canvas


def test_a_log_without_evaluations_has_no_evaluation_panel(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps(LOG_LINES[0]) + "\n")
    panels = plots.training_panels(plots.training_series(rundir.read_log(str(log))))
    assert [title for title, _, _ in panels] == ["loss terms", "training accuracy", "learning rate", "training speed"]
    out = plot_log.main([str(log), "--output", str(tmp_path / "one.png")])
    assert Image.open(out).size == (8 * plots.FIGURE_DPI, 4 * plots.PANEL_HEIGHT * plots.FIGURE_DPI)


def test_bad_run_folders_are_named_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "cut" / rundir.LOG_FILE).parent.mkdir()
    (tmp_path / "cut" / rundir.LOG_FILE).write_text('{"iter": 1, "lo')
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / rundir.LOG_FILE).write_text('{"event": "resumed", "iter": 0}\n')
    for folder, message in (("missing", "run directory {} does not exist"),
                            ("empty", "{} has no train_log.jsonl"),
                            ("cut", "{}/train_log.jsonl holds no records"),
                            ("events", "no progress or evaluation records to plot: {}")):
        path = str(tmp_path / folder)
        out = subprocess.run([sys.executable, "-m", "metric_learning.plot_log", path], cwd=ROOT, capture_output=True,
                             text=True, timeout=120)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1, (folder, out.stderr)
        assert lines[0].startswith("error: ") and message.format(path) in lines[0]


# Two queries against five gallery images, cameras apart (nothing filtered). Ascending distance:
#   query pid 1: pids 2, 1, 3, 1, 4  -> matches at ranks 2 and 4: AP = (1/2 + 2/4) / 2 = 0.5
#   query pid 2: pids 4, 1, 3, 1, 2  -> its one match at rank 5:  AP = 1/5 = 0.2
DISTANCES = np.array([[0.1, 0.2, 0.3, 0.4, 0.5],
                      [0.5, 0.4, 0.3, 0.2, 0.1]])
Q_PIDS, G_PIDS = [1, 2], [2, 1, 3, 1, 4]
Q_CAMS, G_CAMS = [0, 1], [2, 2, 2, 2, 2]


@pytest.fixture
def hand_worked():
    return metrics.evaluate_ranking(DISTANCES, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, ranks=range(1, 7), per_camera=True)


def test_cmc_curve_of_a_hand_worked_case(hand_worked):
    ranks, cmc = plots.cmc_curve(hand_worked)
    assert ranks.tolist() == [1, 2, 3, 4, 5, 6]
    assert cmc.tolist() == [0.0, 0.5, 0.5, 0.5, 1.0, 1.0]


def test_per_camera_bars_of_a_hand_worked_case(hand_worked):
    names, rank1, mean_ap, scored = plots.per_camera_bars(hand_worked)
    assert names == ["c1", "c2"]
    assert rank1.tolist() == [0.0, 0.0]
    assert mean_ap.tolist() == pytest.approx([0.5, 0.2])
    assert scored.tolist() == [1, 1]


def test_evaluation_charts_are_written(hand_worked, tmp_path):
    for draw, name in ((plots.plot_cmc, "cmc.png"), (plots.plot_per_camera, "per_camera.png")):
        path = draw(hand_worked, str(tmp_path / "charts" / name))
        with Image.open(path) as image:
            assert image.size[0] >= 5 * plots.FIGURE_DPI and image.size[1] == 4 * plots.FIGURE_DPI
            assert np.asarray(image.convert("L")).std() > 10


def test_charts_refuse_results_without_their_numbers():
    with pytest.raises(ValueError, match="no rank<k> entries"):
        plots.cmc_curve({"mAP": 0.5})
    with pytest.raises(ValueError, match="no per-camera breakdown"):
        plots.per_camera_bars({"rank1": 0.5, "mAP": 0.5})
