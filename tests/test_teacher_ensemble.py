"""benchmarks/teacher_ensemble.py: two models that each rank one of two queries wrong rank both right together,
worked out by hand."""
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import teacher_ensemble  # noqa: E402
from metric_learning.evaluation import evaluator  # noqa: E402

QUERY = ["0001_c1s1_000001_00.jpg", "0002_c1s1_000002_00.jpg"]
GALLERY = ["0001_c2s1_000003_00.jpg", "0002_c2s1_000004_00.jpg"]


def write_features(directory, query, gallery):
    evaluator.save_feature_set(str(directory), "query", query, QUERY)
    evaluator.save_feature_set(str(directory), "gallery", gallery, GALLERY)
    return str(directory)


@pytest.fixture
def two_models(tmp_path):
    gallery = [[1, 0], [0, 1]]   # both models: identity 1 along x, identity 2 along y
    # model a: query 2 at (1, 0.5) is closer to identity 1 (cos 0.894 against 0.447)
    a = write_features(tmp_path / "a", [[1, 0], [1, 0.5]], gallery)
    # model b: query 1 at (1, 1.2) is closer to identity 2 (cos 0.768 against 0.640)
    b = write_features(tmp_path / "b", [[1, 1.2], [0, 1]], gallery)
    return a, b


def table_rows(output):
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in output.splitlines()[2:]]


def test_each_model_alone_and_the_equal_ensemble(two_models, capsys):
    teacher_ensemble.main(["--feature_sets", ",".join(two_models), "--weights", "1,0", "0,1", "1,1"])
    # alone: one query right at rank 1 (AP 1), one right at rank 2 (AP 0.5) -> Rank-1 50, mAP 75.
    # together: query 1 scores (1 + 0.640) / 2 = 0.820 against (0 + 0.768) / 2 = 0.384,
    # query 2 (0.894 + 0) / 2 = 0.447 against (0.447 + 1) / 2 = 0.724: both right.
    assert table_rows(capsys.readouterr().out) == [
        ["1, 0", "50.00", "100.00", "75.00", "75.00"],
        ["0, 1", "50.00", "100.00", "75.00", "75.00"],
        ["1, 1", "100.00", "100.00", "100.00", "100.00"]]


def test_feature_sets_of_other_images_are_refused(two_models, tmp_path):
    other = write_features(tmp_path / "other", np.eye(2), np.eye(2))
    with open(os.path.join(other, "gallery.txt"), "w") as f:
        f.write("\n".join(reversed(GALLERY)) + "\n")
    with pytest.raises(ValueError, match="other/gallery.txt lists other images than .*/a/gallery.txt"):
        teacher_ensemble.main(["--feature_sets", two_models[0] + "," + other, "--weights", "1,1"])


def test_a_weighting_of_the_wrong_length_is_a_flag_error(two_models, capsys):
    with pytest.raises(SystemExit):
        teacher_ensemble.main(["--feature_sets", ",".join(two_models), "--weights", "1,1,1"])
    assert "--weights 1,1,1 has 3 values for 2 --feature_sets" in capsys.readouterr().err
