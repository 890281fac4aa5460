"""Fault tests in one place: bad inputs that must be refused clearly, faults a run must survive.

The README's "Reliability" section counts these tests; keep the counts there in step.
"""
import json
import os
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from metric_learning import evaluation, experiment, images, listfile, train_elem, transforms

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--model", "MobileNetV3_small_x1_0", "--image_shape", "3,64,32", "--train_batch_size", "16",
         "--samples_each_class", "4", "--display_iter_step", "1000", "--loader_threads", "1"]


def quiet(*_):
    pass


@pytest.fixture(autouse=True)
def own_image_cache(tmp_path, monkeypatch):
    """Each test starts with an empty image-check cache of its own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(images, "_VERIFIED", {})


def jpeg_bytes(image=None):
    image = np.random.default_rng(0).integers(0, 256, (64, 32, 3), dtype=np.uint8) if image is None else image
    return cv2.imencode(".jpg", image)[1].tobytes()


def png_claiming(width, height):
    """A tiny PNG whose header announces ``width`` x ``height`` pixels (a decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


# ----- bad image files: each refused with the file and the reason -------------------------------------------
BAD_FILES = {
    "garbage.jpg": (lambda: b"this is not an image", "not a readable image file"),
    "truncated.jpg": (lambda: jpeg_bytes()[:len(jpeg_bytes()) // 2], r"truncated JPEG: no end-of-image marker"),
    "zero.jpg": (lambda: b"", r"empty file \(0 bytes\)"),
    "notes.png": (lambda: b"name,pid\na,1\n", "not a readable image file"),
    "truncated.png": (lambda: cv2.imencode(".png", np.full((32, 16, 3), 7, np.uint8))[1].tobytes()[:-30],
                      "not a readable image file"),
    "bomb.png": (lambda: png_claiming(50000, 50000), r"image too large"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_image_file_is_refused_naming_it(tmp_path, name):
    make, reason = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(make())
    with pytest.raises(images.BadImageError, match=r"%s.*%s" % (name.replace(".", r"\."), reason)):
        images.read_image(path)


def test_missing_file_and_directory_are_refused(tmp_path):
    (tmp_path / "folder.jpg").mkdir()
    bad = images.check_images([tmp_path / "gone.jpg", tmp_path / "folder.jpg"], on_bad_image="skip")
    assert [reason for _, reason in bad] == ["file does not exist", "is a directory"]


def test_unusual_but_valid_images_decode_to_8_bit_rgb(tmp_path):
    rgb = np.zeros((40, 20, 3), np.uint8)
    rgb[:, :10] = (200, 30, 10)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.jpg", quality=100)
    deep = (np.arange(40 * 20, dtype=np.uint16).reshape(40, 20) * 80)
    cv2.imwrite(str(tmp_path / "deep16.png"), deep)
    cv2.imwrite(str(tmp_path / "alpha.png"), np.dstack([rgb[..., ::-1], np.full((40, 20), 128, np.uint8)]))
    cv2.imwrite(str(tmp_path / "huge.jpg"), np.full((4000, 3000, 3), 90, np.uint8))
    for name in ("cmyk.jpg", "gray.jpg", "deep16.png", "alpha.png", "huge.jpg"):
        image = images.read_image(tmp_path / name)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, name
    np.testing.assert_allclose(images.read_image(tmp_path / "cmyk.jpg")[20, 5], (200, 30, 10), atol=6)
    np.testing.assert_array_equal(images.read_image(tmp_path / "deep16.png")[..., 0], deep >> 8)
    np.testing.assert_array_equal(images.read_image(tmp_path / "alpha.png"), rgb)
    assert images.read_image(tmp_path / "huge.jpg").shape == (4000, 3000, 3)


def test_every_bad_file_is_named_in_one_error_first_20_and_a_count(tmp_path):
    good = tmp_path / "good.jpg"
    good.write_bytes(jpeg_bytes())
    bad = []
    for i in range(25):
        bad.append(tmp_path / ("bad%02d.jpg" % i))
        bad[-1].write_bytes(b"junk")
    with pytest.raises(images.BadImagesError) as info:
        images.check_images([good] + bad)
    message = str(info.value)
    assert message.startswith("25 of 26 images cannot be read")
    assert "bad19.jpg" in message and "bad20.jpg" not in message and message.endswith("... and 5 more")
    assert len(info.value.bad) == 25


def test_second_check_only_stats_and_a_changed_file_is_checked_again(tmp_path, monkeypatch):
    paths = []
    for i in range(3):
        paths.append(tmp_path / ("img%d.jpg" % i))
        paths[-1].write_bytes(jpeg_bytes())
    decoded = []
    real = images.read_image_bgr
    monkeypatch.setattr(images, "read_image_bgr", lambda p: decoded.append(p) or real(p))
    assert images.check_images(paths) == []
    assert len(decoded) == 3
    monkeypatch.setattr(images, "_VERIFIED", {})   # a new process: only the cache file remembers
    images.check_images(paths)
    assert len(decoded) == 3
    paths[1].write_bytes(jpeg_bytes()[:-100])       # damaged later: new size and mtime
    with pytest.raises(images.BadImagesError, match="img1.jpg: corrupt image"):
        images.check_images(paths)
    assert len(decoded) == 4


def test_evaluation_prefetch_never_decodes_with_pillow(tmp_path, monkeypatch):
    """Pillow's JPEG decoder segfaulted on the prefetch thread while Paddle ran (issue 16)."""
    paths = []
    for i in range(5):
        paths.append(str(tmp_path / ("img%d.jpg" % i)))
        cv2.imwrite(paths[-1], np.full((32, 16, 3), 40 * i, np.uint8))

    def refuse(*_, **__):
        raise AssertionError("Pillow was asked to decode an image")

    monkeypatch.setattr(Image, "open", refuse)
    feats = evaluation.extract_features(lambda batch: batch.reshape(len(batch), -1)[:, :4], paths, (3, 32, 16),
                                        batch_size=2)
    assert feats.shape == (5, 4)


# ----- list files -------------------------------------------------------------------------------------------
LIST_FAULTS = {
    "non-numeric": ("image_id class_id super_class_id path\n1 one 1 a.jpg\n", "line 2: .*must be integers"),
    "duplicate image id": ("image_id class_id super_class_id path\n1 1 1 a.jpg\n1 2 1 b.jpg\n",
                           "line 3: image_id 1 already used on line 2"),
    "missing column": ("image_id class_id super_class_id path\n1 1 a.jpg\n", "line 2: expected 4 fields"),
    "no header": ("1 1 1 a.jpg\n", "line 1: expected the header"),
}


@pytest.mark.parametrize("fault", sorted(LIST_FAULTS))
def test_bad_list_file_is_refused_naming_file_and_line(tmp_path, fault):
    text, message = LIST_FAULTS[fault]
    path = tmp_path / "train.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"train\.txt %s" % message):
        listfile.read_list(str(path))


def test_list_file_with_bad_paths_fails_before_training_naming_them(synthetic_root, tmp_path):
    counts = listfile.build_market_lists(synthetic_root, str(tmp_path / "lists"))
    path = counts["train"]["path"]
    lines = open(path).read().splitlines()
    lines[3] = lines[3].rsplit(" ", 1)[0] + " no/such/file.jpg"
    lines[5] = lines[5].rsplit(" ", 1)[0] + " no/such/other.jpg"
    open(path, "w").write("\n".join(lines) + "\n")
    args = train_elem.parse_args(SMALL + ["--train_list", path, "--image_root", synthetic_root,
                                          "--model_save_dir", str(tmp_path / "m"), "--total_iter_num", "2"])
    with pytest.raises(images.BadImagesError, match=r"(?s)2 of \d+ images.*no/such/file\.jpg: file does not exist"
                                                    r".*no/such/other\.jpg"):
        experiment.build_trainer(args, train_elem.build_criterion, log=quiet)
    assert not os.path.exists(tmp_path / "m")


# ----- a dataset with bad images: refused before the first iteration, or skipped and counted ------------------
@pytest.fixture
def damaged_copy(synthetic_root, tmp_path):
    """The synthetic set with one corrupt training JPEG and one truncated gallery JPEG (symlinks elsewhere)."""
    root = tmp_path / "damaged"
    root.mkdir()
    for entry in os.listdir(synthetic_root):
        source = os.path.join(synthetic_root, entry)
        if os.path.isdir(source):
            (root / entry).mkdir()
            for name in os.listdir(source):
                os.symlink(os.path.join(source, name), root / entry / name)
        else:
            os.symlink(source, root / entry)
    train = sorted((root / "bounding_box_train").iterdir())[7]
    gallery = sorted(p for p in (root / "bounding_box_test").iterdir() if not p.name.startswith("-1"))[3]
    for path, data in ((train, b"\xff\xd8garbage"), (gallery, open(gallery, "rb").read()[:300])):
        path.unlink()
        path.write_bytes(data)
    return str(root), str(train), str(gallery)


def test_damaged_dataset_is_refused_before_the_first_iteration(damaged_copy, tmp_path):
    root, train, gallery = damaged_copy
    args = train_elem.parse_args(SMALL + ["--dataset_root", root, "--model_save_dir", str(tmp_path / "m"),
                                          "--total_iter_num", "2"])
    with pytest.raises(images.BadImagesError) as info:
        experiment.build_trainer(args, train_elem.build_criterion, log=quiet)
    assert [path for path, _ in info.value.bad] == [train, gallery]
    assert not os.path.exists(tmp_path / "m")


def test_damaged_dataset_trains_with_skip_and_counts_what_it_left_out(damaged_copy, tmp_path):
    root, train, gallery = damaged_copy
    args = train_elem.parse_args(SMALL + ["--dataset_root", root, "--model_save_dir", str(tmp_path / "m"),
                                          "--total_iter_num", "2", "--on_bad_image", "skip"])
    logs = []
    run = experiment.build_trainer(args, train_elem.build_criterion, log=logs.append)
    assert any(line.startswith("skipping 2 unreadable images") for line in logs), logs
    assert train not in run.stream.dataset.paths
    metrics = run.fit()
    assert metrics["num_gallery"] > 0
