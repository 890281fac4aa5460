"""benchmarks/pareto.py: the frontier and the 'best:' line worked out by hand, and one real run on tiny exports."""
import argparse
import json
import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import pareto  # noqa: E402


def point(label, speed, mAP, peer=False):
    return {"label": label, "speed": speed, "mAP": mAP, "peer": peer}


def test_frontier_keeps_only_points_nothing_beats_on_both_axes():
    points = [point("fast", 900, 60), point("accurate", 100, 80), point("dominated", 90, 70),
              point("middle", 400, 70), point("tie", 400, 70)]
    # 'dominated' loses to 'middle' on both axes; equal points do not dominate each other
    assert pareto.frontier(points) == {0, 1, 3, 4}


def test_best_is_the_fastest_model_at_the_peers_map_or_better():
    peer = point("peer (ONNX Runtime)", 450, 77.4, peer=True)
    points = [point("slow", 100, 80.0), point("fast", 1000, 77.4), point("fastest", 2000, 70.0), peer]
    assert pareto.best_line(points, peer) == \
        "best: fast mAP=77.40 crops_per_s=1000.0 peer_ort_crops_per_s=450.0 speedup=2.22"


def test_the_peers_mAP_is_reached_up_to_float_rounding_only():
    # the same network through two runtimes: 77.376806 against 77.376807 is the same mAP; 77.37 is not
    peer = point("peer (ONNX Runtime)", 450, 77.376807, peer=True)
    same = pareto.best_line([point("same network", 500, 77.376806), peer], peer)
    assert same == "best: same network mAP=77.38 crops_per_s=500.0 peer_ort_crops_per_s=450.0 speedup=1.11"
    assert pareto.best_line([point("lower", 500, 77.37), peer], peer).startswith("best: none")


def test_best_is_none_with_the_reason_when_no_model_reaches_the_peer():
    peer = point("peer (ONNX Runtime)", 450, 77.4, peer=True)
    line = pareto.best_line([point("a", 1000, 68.3), point("b", 2000, 58.6), peer], peer)
    assert line == ("best: none (no model reaches the peer's mAP=77.40; the most accurate is a at mAP=68.30) "
                    "peer_ort_crops_per_s=450.0")


def test_rounds_take_every_model_in_turn_and_report_the_median(monkeypatch):
    # the machine is slow in the middle of round 2: with rounds in turn both models lose that round, and the
    # median of each ignores it
    calls = []
    speeds = {"a": [100.0, 40.0, 110.0], "b": [200.0, 90.0, 190.0]}

    def fake_measure(embed, shape, batches, args):
        calls.append(embed)
        value = speeds[embed][sum(1 for c in calls if c == embed) - 1]
        return {b: value * b for b in batches}

    monkeypatch.setattr(pareto, "measure", fake_measure)
    results = pareto.measure_in_rounds([("a", (3, 8, 4)), ("b", (3, 8, 4))], [1, 32],
                                       argparse.Namespace(rounds=3))
    assert calls == ["a", "b", "a", "b", "a", "b"]
    assert results == [({1: 100.0, 32: 3200.0}, [3200.0, 1280.0, 3520.0]),
                       ({1: 190.0, 32: 6080.0}, [6400.0, 2880.0, 6080.0])]


def write_eval(path, mAP, rank1):
    with open(path, "w") as f:
        json.dump({"mAP": mAP, "rank1": rank1, "metric": "cosine"}, f)
    return str(path)


def test_one_run_measures_every_model_and_the_peer_and_writes_table_and_plot(tmp_path, capsys):
    from metric_learning.deploy import export
    from metric_learning.models.reid_net import build_model

    exports = {}
    for name, shape in (("small", (3, 64, 32)), ("large", (3, 96, 48))):
        prefix = str(tmp_path / name / "reid")
        export.export_inference_model(build_model("MobileNetV3_small_x1_0", embedding_size=16), prefix, shape)
        exports[name] = export.export_onnx(prefix)
    evals = {"small": write_eval(tmp_path / "small.json", 0.70, 0.85),
             "large": write_eval(tmp_path / "large.json", 0.80, 0.90)}
    peer_eval = write_eval(tmp_path / "peer.json", 0.75, 0.88)
    out = tmp_path / "pareto"
    pareto.main(["--model", exports["small"], evals["small"], "--model", exports["large"], evals["large"],
                 "--peer_onnx", exports["small"], "--peer_size", "64x32", "--peer_eval", peer_eval,
                 "--batches", "1,2", "--min_seconds", "0.01", "--min_batches", "1", "--rounds", "2",
                 "--output", str(out)])
    printed = capsys.readouterr().out.strip().splitlines()
    table = (out / "pareto.md").read_text()
    assert "median of 2 rounds taken in turn" in table
    assert re.search(r"\| small \| 64x32 \| ONNX Runtime \| 70\.00 \| 85\.00 \| "
                     r"[0-9.]+ \| [0-9.]+ \| [0-9.]+ / [0-9.]+ \|", table)
    assert "| large | 96x48 | ONNX Runtime | 80.00 | 90.00 |" in table
    assert "| peer: torchreid reid.onnx | 64x32 | ONNX Runtime | 75.00 | 88.00 |" in table
    # only 'large' reaches the peer's 75.00 mAP, so it is the best whatever the speeds
    assert printed[-1].startswith("best: large (ONNX Runtime) mAP=80.00 crops_per_s=")
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_eval_file_is_named_before_anything_is_measured(tmp_path, capsys):
    with pytest.raises(SystemExit):
        pareto.main(["--model", str(tmp_path / "reid.onnx"), str(tmp_path / "e.json"), "--peer_onnx", "x.onnx",
                     "--peer_eval", "p.json", "--output", str(tmp_path)])
    assert "--model: no such file: %s" % (tmp_path / "reid.onnx") in capsys.readouterr().err
