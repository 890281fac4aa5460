import os
import subprocess
import sys

import numpy as np
import pytest

from metric_learning.data import listfile
from conftest import ROOT

HEADER = "image_id class_id super_class_id path\n"


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def test_roundtrip_and_space_in_path(tmp_path):
    records = [listfile.ListRecord(1, 1, 1, "gt_bbox/0001_c1s1_001051_00.jpg"),
               listfile.ListRecord(2, 3, 1, "my images/b.jpg")]
    path = str(tmp_path / "sub" / "list.txt")
    listfile.write_list(path, records)
    with open(path) as f:
        assert f.read() == HEADER + "1 1 1 gt_bbox/0001_c1s1_001051_00.jpg\n2 3 1 my images/b.jpg\n"
    assert listfile.read_list(path) == records


def test_read_skips_blank_lines(tmp_path):
    path = write(tmp_path / "l.txt", HEADER + "\n5 2 1 a.jpg\n\n7 2 1 b.jpg\n\n")
    assert [(r.image_id, r.path) for r in listfile.read_list(path)] == [(5, "a.jpg"), (7, "b.jpg")]


@pytest.mark.parametrize("text, message", [
    ("", r"l\.txt is empty"),
    ("\n\n", r"l\.txt is empty"),
    ("image_id class_id path\n1 1 a.jpg\n", r"l\.txt line 1: expected the header"),
    (HEADER, r"l\.txt has a header but no records"),
    (HEADER + "1 1 1 a.jpg\n2 1 b.jpg\n", r"l\.txt line 3: expected 4 fields"),
    (HEADER + "1 1 1 a.jpg\n\n2 x 1 b.jpg\n", r"l\.txt line 4: .*must be integers"),
    (HEADER + "1 -1 1 a.jpg\n", r"l\.txt line 2: ids must be non-negative"),
    (HEADER + "1 1 1 a.jpg\n1 2 1 b.jpg\n", r"l\.txt line 3: image_id 1 already used on line 2"),
])
def test_read_errors_name_file_and_line(tmp_path, text, message):
    path = write(tmp_path / "l.txt", text)
    with pytest.raises(ValueError, match=message):
        listfile.read_list(path)


def test_records_to_paths_labels_dense_from_zero(tmp_path):
    records = [listfile.ListRecord(1, 3, 1, "a/x.jpg"), listfile.ListRecord(2, 7, 1, "b.jpg"),
               listfile.ListRecord(3, 3, 1, "c.jpg"), listfile.ListRecord(4, 11319, 2, "d.jpg")]
    paths, labels = listfile.records_to_paths_labels(records, str(tmp_path))
    assert paths == [os.path.join(str(tmp_path), p) for p in ("a/x.jpg", "b.jpg", "c.jpg", "d.jpg")]
    assert labels.dtype == np.int64 and labels.tolist() == [0, 1, 0, 2]


def fake_gt_bbox(root):
    """5 ids (pids 1, 2, 4, 9, 10) with 3, 2, 1, 2, 2 images, plus a non-image file."""
    folder = os.path.join(root, "gt_bbox")
    os.makedirs(folder)
    names = ["0001_c1s1_000100_00.jpg", "0001_c2s1_000200_00.jpg", "0001_c3s1_000300_00.jpg",
             "0002_c1s1_000100_00.jpg", "0002_c4s1_000200_00.jpg", "0004_c1s1_000100_00.jpg",
             "0009_c1s1_000100_00.jpg", "0009_c2s1_000200_00.jpg.jpg", "0010_c5s2_000100_00.jpg",
             "0010_c6s2_000200_00.jpg", "Thumbs.db"]
    for name in names:
        open(os.path.join(folder, name), "wb").close()


def read_text(path):
    with open(path) as f:
        return f.read()


def test_build_identity_split_default_half(tmp_path):
    fake_gt_bbox(str(tmp_path))
    counts = listfile.build_market_lists(str(tmp_path), str(tmp_path / "out"))
    # 5 ids -> 5 // 2 = 2 test ids, the largest pids (9, 10); class ids restart at 1 in each file
    assert counts["all"] == {"images": 10, "classes": 5}
    assert (counts["train"]["images"], counts["train"]["classes"]) == (6, 3)
    assert (counts["test"]["images"], counts["test"]["classes"]) == (4, 2)
    assert read_text(tmp_path / "out" / "train.txt") == HEADER + (
        "1 1 1 gt_bbox/0001_c1s1_000100_00.jpg\n2 1 1 gt_bbox/0001_c2s1_000200_00.jpg\n"
        "3 1 1 gt_bbox/0001_c3s1_000300_00.jpg\n4 2 1 gt_bbox/0002_c1s1_000100_00.jpg\n"
        "5 2 1 gt_bbox/0002_c4s1_000200_00.jpg\n6 3 1 gt_bbox/0004_c1s1_000100_00.jpg\n")
    assert read_text(tmp_path / "out" / "test.txt") == HEADER + (
        "1 1 1 gt_bbox/0009_c1s1_000100_00.jpg\n2 1 1 gt_bbox/0009_c2s1_000200_00.jpg.jpg\n"
        "3 2 1 gt_bbox/0010_c5s2_000100_00.jpg\n4 2 1 gt_bbox/0010_c6s2_000200_00.jpg\n")


def test_build_identity_split_num_test_ids(tmp_path):
    fake_gt_bbox(str(tmp_path))
    counts = listfile.build_market_lists(str(tmp_path), str(tmp_path), num_test_ids=4)
    assert (counts["train"]["images"], counts["test"]["images"], counts["test"]["classes"]) == (3, 7, 4)
    with pytest.raises(ValueError, match="num_test_ids must be between 1 and 4"):
        listfile.build_market_lists(str(tmp_path), str(tmp_path), num_test_ids=5)


def test_build_tail_split_cuts_by_file_name(tmp_path):
    fake_gt_bbox(str(tmp_path))
    counts = listfile.build_market_lists(str(tmp_path), str(tmp_path), split="tail", num_test=3)
    test = listfile.read_list(str(tmp_path / "test.txt"))
    # the last 3 names: 0009_c2s1_000200_00.jpg.jpg, 0010_c5..., 0010_c6...; id 9 is cut in two
    assert [(r.class_id, r.path[8:12]) for r in test] == [(1, "0009"), (2, "0010"), (2, "0010")]
    assert (counts["train"]["images"], counts["train"]["classes"]) == (7, 4)
    with pytest.raises(ValueError, match="unknown split"):
        listfile.build_market_lists(str(tmp_path), str(tmp_path), split="random")


def run_cli(*args):
    # run from outside the repository: the script must find metric_learning by itself
    return subprocess.run([sys.executable, os.path.join(ROOT, "data", "build_market_lists.py")] + list(args),
                          capture_output=True, text=True, cwd="/", env=dict(os.environ, PYTHONPATH=""))


def test_cli_prints_counts(tmp_path):
    fake_gt_bbox(str(tmp_path))
    out = run_cli("--root", str(tmp_path), "--output_dir", str(tmp_path / "lists"), "--num_test_ids", "1")
    assert out.returncode == 0, out.stderr
    assert "read 10 images of 5 classes" in out.stdout
    assert "train      8 images     4 classes" in out.stdout
    assert "test       2 images     1 classes" in out.stdout
    assert len(listfile.read_list(str(tmp_path / "lists" / "test.txt"))) == 2
    bad = run_cli("--root", str(tmp_path / "nowhere"), "--output_dir", str(tmp_path))
    assert bad.returncode != 0 and "nowhere" in bad.stderr and "Traceback" not in bad.stderr


def test_real_market1501_lists(market_root, tmp_path):
    counts = listfile.build_market_lists(market_root, str(tmp_path))
    assert counts["all"] == {"images": 25259, "classes": 1501}
    assert (counts["train"]["images"], counts["train"]["classes"]) == (13968, 751)
    assert (counts["test"]["images"], counts["test"]["classes"]) == (11291, 750)
    train = listfile.read_list(str(tmp_path / "train.txt"))
    test = listfile.read_list(str(tmp_path / "test.txt"))
    assert {r.path[8:12] for r in train}.isdisjoint({r.path[8:12] for r in test})
    paths, labels = listfile.records_to_paths_labels(test, market_root)
    assert os.path.isfile(paths[0]) and labels.max() == 749
    tail = listfile.build_market_lists(market_root, str(tmp_path), split="tail", num_test=1014)
    assert (tail["train"]["images"], tail["train"]["classes"]) == (24245, 1421)
    assert (tail["test"]["images"], tail["test"]["classes"]) == (1014, 80)
