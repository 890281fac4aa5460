import os

import numpy as np
import pytest

from metric_learning.data import market


def touch(folder, *names):
    os.makedirs(folder, exist_ok=True)
    for name in names:
        open(os.path.join(folder, name), "wb").close()


@pytest.mark.parametrize("name, expected", [
    ("0002_c1s1_000451_03.jpg", (2, 0)),
    ("-1_c3s1_000401_03.jpg", (-1, 2)),  # junk
    ("0000_c6s3_094992_01.jpg", (0, 5)),  # distractor
    ("1501_c6s4_001902_00.jpg", (1501, 5)),
    ("1488_c1s6_023021_00.jpg.jpg", (1488, 0)),  # the release really has these double extensions
    ("/some/dir/0007_c2s2_000001_01.jpg", (7, 1)),  # directories are ignored
])
def test_parse_name_market(name, expected):
    assert market.parse_name(name) == expected


def test_parse_name_duke_preset_and_custom_regexes():
    assert market.parse_name("0001_c2_f0046182.jpg", "duke") == (1, 1)
    torchreid_style = r"(?P<pid>[-\d]+)_c(?P<cam>\d+)"  # torchreid's regex with named groups
    assert market.parse_name("0001_c2_f0046182.jpg", torchreid_style) == (1, 1)
    assert market.parse_name("person42_x.png", r"person(?P<pid>\d+)_") == (42, -1)  # no cam group: camid unknown


def test_parse_name_errors_name_file_and_pattern():
    with pytest.raises(ValueError, match=r"0001_c2_f0046182\.jpg.*does not match.*\(\?P<pid>"):
        market.parse_name("0001_c2_f0046182.jpg")  # a Duke name under the Market pattern
    with pytest.raises(ValueError, match="Thumbs.db"):
        market.parse_name("Thumbs.db")
    with pytest.raises(ValueError, match="no named group 'pid'"):
        market.parse_name("0001_c1.jpg", r"(\d+)_c(\d+)")
    with pytest.raises(ValueError, match="invalid file-name pattern"):
        market.parse_name("0001_c1.jpg", r"(?P<pid>\d+")


def test_load_folder_sorted_ignores_non_images(tmp_path):
    folder = tmp_path / "query"
    touch(str(folder), "0003_c2s1_000100_00.jpg", "0001_c1s1_000200_00.jpg", "-1_c1s1_000300_01.jpg",
          "Thumbs.db", "readme.txt")
    samples = market.load_folder(str(folder))
    assert [os.path.basename(s.path) for s in samples] == [
        "-1_c1s1_000300_01.jpg", "0001_c1s1_000200_00.jpg", "0003_c2s1_000100_00.jpg"]
    assert [(s.pid, s.camid) for s in samples] == [(-1, 0), (1, 0), (3, 1)]
    assert all(os.path.isabs(s.path) and os.path.dirname(s.path) == str(folder) for s in samples)


def test_load_folder_errors(tmp_path):
    touch(str(tmp_path / "bad"), "0001_c1s1_000001_00.jpg", "holiday.jpg")
    with pytest.raises(ValueError, match=r"holiday\.jpg.*market|holiday\.jpg.*pid"):
        market.load_folder(str(tmp_path / "bad"))
    with pytest.raises(ValueError, match="does not exist") as info:
        market.load_folder(str(tmp_path / "nope"))
    assert isinstance(info.value, FileNotFoundError) and "nope" in str(info.value)


def make_layout(root):
    touch(os.path.join(root, "bounding_box_train"), "0002_c1s1_000001_01.jpg", "0002_c2s1_000002_01.jpg",
          "0007_c3s1_000003_02.jpg", "0005_c1s1_000004_01.jpg")
    touch(os.path.join(root, "query"), "0010_c1s1_000005_00.jpg", "0011_c2s1_000006_00.jpg")
    touch(os.path.join(root, "bounding_box_test"), "0010_c2s1_000007_01.jpg", "0011_c1s1_000008_01.jpg",
          "-1_c1s1_000009_03.jpg", "-1_c2s1_000010_03.jpg", "0000_c1s1_000011_02.jpg", "Thumbs.db")


def test_load_protocol_drops_junk_keeps_distractors(tmp_path):
    make_layout(str(tmp_path))
    proto = market.load_protocol(str(tmp_path))
    assert [s.pid for s in proto.train] == [2, 2, 5, 7]
    assert [(s.pid, s.camid) for s in proto.query] == [(10, 0), (11, 1)]
    assert [s.pid for s in proto.gallery] == [0, 10, 11]
    raw = market.load_protocol(str(tmp_path), drop_junk=False)
    assert [s.pid for s in raw.gallery] == [-1, -1, 0, 10, 11]


def test_load_protocol_missing_split(tmp_path):
    touch(str(tmp_path / "bounding_box_train"), "0001_c1s1_000001_01.jpg")
    with pytest.raises(ValueError, match="query"):
        market.load_protocol(str(tmp_path))
    with pytest.raises(ValueError, match="does not exist"):
        market.load_protocol(str(tmp_path / "missing_root"))


def test_load_protocol_reads_only_the_splits_asked_for(tmp_path):
    make_layout(str(tmp_path))
    os.rename(tmp_path / "bounding_box_train", tmp_path / "elsewhere")  # evaluating needs no training folder
    proto = market.load_protocol(str(tmp_path), splits=market.EVALUATION_SPLITS)
    assert proto.train == []
    assert [s.pid for s in proto.query] == [10, 11] and [s.pid for s in proto.gallery] == [0, 10, 11]
    with pytest.raises(ValueError, match="bounding_box_train"):
        market.load_protocol(str(tmp_path))


def test_relabel_dense_in_pid_order():
    samples = [market.ReIDSample("a", 5, 0), market.ReIDSample("b", 2, 0), market.ReIDSample("c", 5, 1),
               market.ReIDSample("d", 9, 0)]
    labels, num_classes = market.relabel(samples)
    assert labels.dtype == np.int64
    assert labels.tolist() == [1, 0, 1, 2]
    assert num_classes == 3


def test_identity_folders(tmp_path):
    touch(str(tmp_path / "bob"), "x.jpg", "y.png", "notes.txt")
    touch(str(tmp_path / "alice"), "1.jpg")
    touch(str(tmp_path / "empty"))
    touch(str(tmp_path), "stray.jpg")  # a file at the top level is not an identity
    samples, names = market.load_identity_folders(str(tmp_path))
    assert names == ["alice", "bob"]
    assert [(os.path.relpath(s.path, str(tmp_path)), s.pid, s.camid) for s in samples] == [
        (os.path.join("alice", "1.jpg"), 0, -1), (os.path.join("bob", "x.jpg"), 1, -1),
        (os.path.join("bob", "y.png"), 1, -1)]
    with pytest.raises(ValueError, match="no identity folders"):
        market.load_identity_folders(str(tmp_path / "empty"))


def test_real_market1501_counts(market_root):
    raw = market.load_protocol(market_root, drop_junk=False)
    proto = market.load_protocol(market_root)
    counts = lambda samples: (len(samples), len({s.pid for s in samples}), len({s.camid for s in samples}))
    assert counts(proto.train) == (12936, 751, 6)
    assert counts(proto.query) == (3368, 750, 6)
    assert len(raw.gallery) == 19732
    assert len(proto.gallery) == 15913
    assert sum(s.pid == 0 for s in proto.gallery) == 2798  # distractors stay
    assert {s.camid for s in raw.gallery} == set(range(6))
    labels, num_classes = market.relabel(proto.train)
    assert num_classes == 751 and labels.min() == 0 and labels.max() == 750
    assert not {s.pid for s in proto.train} & {s.pid for s in proto.query}
