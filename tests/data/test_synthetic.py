import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from metric_learning.data import market, synthetic
from conftest import ROOT

TINY = dict(num_train_ids=4, num_test_ids=5, num_cameras=3, images_per_id_per_cam=2)


def all_files(root):
    out = {}
    for folder in sorted(os.listdir(root)):
        path = os.path.join(root, folder)
        if os.path.isdir(path):
            for name in sorted(os.listdir(path)):
                with open(os.path.join(path, name), "rb") as f:
                    out[folder + "/" + name] = f.read()
    return out


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    """The default demo-size dataset (60 + 60 ids, 6 cameras), generated once for this module."""
    root = str(tmp_path_factory.mktemp("synthetic"))
    counts = synthetic.generate(root, seed=0)
    return root, counts


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    synthetic.generate(str(tmp_path / "a"), seed=5, **TINY)
    synthetic.generate(str(tmp_path / "b"), seed=5, **TINY)
    synthetic.generate(str(tmp_path / "c"), seed=6, **TINY)
    a, b, c = (all_files(str(tmp_path / n)) for n in "abc")
    assert len(a) > 40 and a == b
    assert set(c) != set(a) or any(c[k] != a[k] for k in a)


def test_existing_output_needs_overwrite(tmp_path):
    counts = synthetic.generate(str(tmp_path), seed=1, **TINY)
    with pytest.raises(ValueError, match="overwrite"):
        synthetic.generate(str(tmp_path), seed=1, **TINY)
    assert synthetic.generate(str(tmp_path), seed=1, overwrite=True, **TINY) == counts
    with pytest.raises(ValueError, match="images_per_id_per_cam"):
        synthetic.generate(str(tmp_path / "x"), images_per_id_per_cam=1)
    with pytest.raises(ValueError, match="num_cameras"):
        synthetic.generate(str(tmp_path / "x"), num_cameras=1)
    with pytest.raises(ValueError, match="image_size"):
        synthetic.generate(str(tmp_path / "x"), image_size=(128, 8))


def test_layout_and_names_follow_market1501(demo_root):
    root, counts = demo_root
    proto = market.load_protocol(root, drop_junk=False)  # every name parses with the Market-1501 pattern
    gt = market.load_folder(os.path.join(root, "gt_bbox"))
    assert [len(proto.train), len(proto.query), len(proto.gallery), len(gt)] == [
        counts["bounding_box_train"], counts["query"], counts["bounding_box_test"], counts["gt_bbox"]]
    train_ids, query_ids = {s.pid for s in proto.train}, {s.pid for s in proto.query}
    assert len(train_ids) == counts["train_ids"] == 60 and len(query_ids) == counts["test_ids"] == 60
    assert not train_ids & query_ids and min(train_ids | query_ids) >= 1
    gallery_pids = [s.pid for s in proto.gallery]
    assert gallery_pids.count(-1) == counts["junk"] > 0 and gallery_pids.count(0) == counts["distractors"] > 0
    assert set(gallery_pids) - {-1, 0} == query_ids
    # every query has a true match from another camera, and at most one query per id and camera
    gallery_pairs = {(s.pid, s.camid) for s in proto.gallery}
    for q in proto.query:
        assert any(pid == q.pid and cam != q.camid for pid, cam in gallery_pairs)
    assert len({(s.pid, s.camid) for s in proto.query}) == len(proto.query)
    # gt_bbox: every identity image, hand-drawn box index 00
    assert len(gt) == len(proto.train) + len(proto.query) + len(proto.gallery) - counts["junk"] - counts["distractors"]
    assert all(os.path.basename(s.path).endswith("_00.jpg") for s in gt + proto.query)
    assert {s.camid for s in proto.train} == set(range(6))
    image = cv2.imread(proto.query[0].path)
    assert image.shape == (128, 64, 3)
    with open(os.path.join(root, "synthetic.json")) as f:
        assert json.load(f)["counts"] == counts


def load_rgb(samples):
    return np.stack([cv2.cvtColor(cv2.imread(s.path), cv2.COLOR_BGR2RGB) for s in samples])


def rank1_cross_camera(qf, qp, qc, gf, gp, gc):
    """Market-1501 Rank-1: nearest gallery image, ignoring same-id same-camera images and junk."""
    d = (qf ** 2).sum(1)[:, None] + (gf ** 2).sum(1)[None, :] - 2 * qf @ gf.T
    d[((qp[:, None] == gp[None, :]) & (qc[:, None] == gc[None, :])) | (gp[None, :] == -1)] = np.inf
    return float(np.mean(gp[np.argmin(d, axis=1)] == qp))


def test_difficulty_raw_pixels_retrieve_poorly_but_above_chance(demo_root):
    root, _ = demo_root
    proto = market.load_protocol(root)
    q, g = proto.query, proto.gallery
    qp, qc = np.array([s.pid for s in q]), np.array([s.camid for s in q])
    gp, gc = np.array([s.pid for s in g]), np.array([s.camid for s in g])
    qi, gi = load_rgb(q), load_rgb(g)
    raw = rank1_cross_camera(qi.reshape(len(q), -1) / 255.0, qp, qc, gi.reshape(len(g), -1) / 255.0, gp, gc)
    chance = 1.0 / 60
    assert 2 * chance < raw < 0.4, raw
    # learnable: across cameras, one identity's colour histograms are closer than two identities'
    hq, hg = synthetic.colour_histograms(qi), synthetic.colour_histograms(gi)
    d = ((hq[:, None] - hg[None]) ** 2).sum(-1)
    same = (qp[:, None] == gp[None]) & (qc[:, None] != gc[None])
    other = (qp[:, None] != gp[None]) & (gp[None] > 0)
    assert d[same].mean() < 0.95 * d[other].mean(), (d[same].mean(), d[other].mean())


def test_cli_writes_dataset(tmp_path):
    script = os.path.join(ROOT, "data", "make_synthetic.py")
    out = subprocess.run([sys.executable, script, "--root", str(tmp_path), "--num_train_ids", "3",
                          "--num_test_ids", "3", "--num_cameras", "2", "--images_per_id_per_cam", "2",
                          "--height", "64", "--width", "32"],
                         capture_output=True, text=True, cwd="/", env=dict(os.environ, PYTHONPATH=""))
    assert out.returncode == 0, out.stderr
    assert "bounding_box_train" in out.stdout and "3 train ids, 3 test ids" in out.stdout
    image = cv2.imread(market.load_folder(str(tmp_path / "query"))[0].path)
    assert image.shape == (64, 32, 3)
    again = subprocess.run([sys.executable, script, "--root", str(tmp_path)], capture_output=True, text=True, cwd="/")
    assert again.returncode != 0 and "overwrite" in again.stderr and "Traceback" not in again.stderr


def test_colour_histograms_by_hand():
    images = np.zeros((1, 8, 4, 3), np.uint8)
    images[0, 0, :] = (255, 0, 0)  # outside the central region (rows 1..6, columns 1..2): not counted
    images[0, 1:4, 1:3] = 255  # 6 of the 12 region pixels white, 6 black
    hist = synthetic.colour_histograms(images, bins=2)
    expected = np.zeros((1, 8))
    expected[0, 0] = expected[0, 7] = np.sqrt(0.5)  # black = bin (0,0,0) -> 0, white = (1,1,1) -> 7
    np.testing.assert_allclose(hist, expected)
