import os

import cv2
import numpy as np
import paddle
import pytest
from PIL import Image

from metric_learning.data import datasets, listfile, market, transforms


def save_png(path, image):
    Image.fromarray(image).save(str(path))
    return str(path)


def solid(rgb, height=16, width=8):
    return np.tile(np.asarray(rgb, np.uint8), (height, width, 1))


@pytest.fixture
def images(tmp_path):
    """Four lossless PNG images: red, green, blue 16x8 and a 32x16 gradient."""
    gradient = np.arange(32 * 16 * 3, dtype=np.int64).reshape(32, 16, 3).astype(np.uint8)
    arrays = [solid((255, 0, 0)), solid((0, 255, 0)), solid((0, 0, 255)), gradient]
    paths = [save_png(tmp_path / ("img%d.png" % i), a) for i, a in enumerate(arrays)]
    return paths, arrays


EVAL = transforms.build_transforms((3, 16, 8), train=False)


def test_items_are_normalised_rgb_and_int64_labels(images):
    paths, arrays = images
    ds = datasets.ImageDataset(paths, [3, 1, 4, 1], EVAL)
    assert len(ds) == 4
    image, label = ds[0]
    assert image.shape == (3, 16, 8) and image.dtype == np.float32
    assert isinstance(label, np.int64) and label == 3
    # red stays in channel 0 (RGB, not OpenCV's BGR): (1 - 0.485) / 0.229 = 2.248908, (0 - 0.456) / 0.224 = -2.035714
    np.testing.assert_allclose(image[:, 5, 5], [2.248908, -2.035714, -1.804444], atol=1e-5)
    np.testing.assert_array_equal(ds[3][0], EVAL(arrays[3]))  # resized from 32x16 exactly like the transform does


def test_read_image_modes(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    path = save_png(tmp_path / "g.png", gray)
    rgb = datasets.read_image(path)
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[..., 1], gray)


def test_missing_file_fails_at_construction(images, tmp_path):
    paths, _ = images
    missing = str(tmp_path / "gone.jpg")
    with pytest.raises(datasets.BadImageError, match=r"1 of 5 images cannot be read.*\n  .*gone\.jpg: file does not "
                                                     r"exist") as info:
        datasets.ImageDataset(paths + [missing], [0] * 5, EVAL)
    assert isinstance(info.value, ValueError) and info.value.path == missing


def make_bad_files(tmp_path):
    good = save_png(tmp_path / "good.png", solid((10, 20, 30)))
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not an image")
    ok, data = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 256, (64, 32, 3), dtype=np.uint8))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data.tobytes()[: len(data) // 2])
    return good, str(garbage), str(truncated)


def test_corrupt_and_truncated_images_are_all_named_before_any_item_is_read(tmp_path):
    good, garbage, truncated = make_bad_files(tmp_path)
    with pytest.raises(datasets.BadImageError) as info:
        datasets.ImageDataset([good, garbage, truncated], [0, 1, 2], EVAL)
    # OpenCV alone would return a half-grey picture for the truncated JPEG without any error
    assert info.value.bad == [(garbage, "not a readable image file"),
                              (truncated, "corrupt image (truncated JPEG: no end-of-image marker)")]
    assert str(info.value).startswith("2 of 3 images cannot be read")


def test_skip_drops_bad_files_up_front(tmp_path):
    good, garbage, truncated = make_bad_files(tmp_path)
    good2 = save_png(tmp_path / "good2.png", solid((1, 2, 3)))
    missing = str(tmp_path / "missing.png")
    with pytest.warns(UserWarning, match="skipped 3 unreadable images"):
        ds = datasets.ImageDataset([garbage, good, missing, truncated, good2], [5, 6, 7, 8, 9], EVAL,
                                   on_bad_image="skip")
    assert len(ds) == 2 and ds.num_skipped == 3
    assert ds.skipped_paths == [garbage, missing, truncated]
    assert ds.kept_indices.tolist() == [1, 4]
    assert ds.labels.tolist() == [6, 9] and ds[1][1] == 9
    with pytest.raises(datasets.BadImageError, match="none of the 2 images"):
        datasets.ImageDataset([garbage, truncated], [0, 1], EVAL, on_bad_image="skip")
    with pytest.raises(ValueError, match="on_bad_image"):
        datasets.ImageDataset([good], [0], EVAL, on_bad_image="ignore")


def test_cache_holds_resized_images_and_serves_them_after_the_file_is_gone(images):
    paths, arrays = images
    plain = datasets.ImageDataset(paths, [0, 1, 2, 3], EVAL)
    cached = datasets.ImageDataset(paths, [0, 1, 2, 3], EVAL, cache=True)
    assert cached.cache_nbytes == 0
    for i in range(4):
        np.testing.assert_array_equal(cached[i][0], plain[i][0])
    assert cached.cache_nbytes == 4 * 16 * 8 * 3  # the 32x16 image is cached at the 16x8 target size
    os.remove(paths[3])
    np.testing.assert_array_equal(cached[3][0], EVAL(arrays[3]))
    with pytest.raises(datasets.BadImageError):
        plain[3]


def test_cache_is_not_modified_by_random_augmentation(images):
    paths, _ = images
    train = transforms.build_transforms((3, 16, 8), train=True, flip_prob=1, pad=2, erase_prob=1, seed=0)
    ds = datasets.ImageDataset(paths, [0, 1, 2, 3], train, cache=True).fill_cache()
    before = [ds.load_image(i).copy() for i in range(4)]
    for _ in range(3):
        for i in range(4):
            ds[i]
    for i in range(4):
        np.testing.assert_array_equal(ds.load_image(i), before[i])
    with pytest.raises(ValueError, match="cache=True"):
        datasets.ImageDataset(paths, [0, 1, 2, 3], train).fill_cache()


def test_plain_callable_transform_caches_decoded_size(images):
    paths, _ = images
    ds = datasets.ImageDataset(paths[3:], [0], lambda im: im.transpose(2, 0, 1).astype(np.float32), cache=True)
    assert ds[0][0].shape == (3, 32, 16) and ds.cache_nbytes == 32 * 16 * 3


def test_from_list_file_and_from_samples(images, tmp_path):
    paths, _ = images
    root = os.path.dirname(paths[0])
    listfile.write_list(str(tmp_path / "l.txt"), [
        listfile.ListRecord(1, 5, 1, "img2.png"), listfile.ListRecord(2, 3, 1, "img0.png"),
        listfile.ListRecord(3, 5, 1, "img1.png")])
    ds = datasets.from_list_file(str(tmp_path / "l.txt"), root, EVAL)
    assert ds.paths == [os.path.join(root, n) for n in ("img2.png", "img0.png", "img1.png")]
    assert ds.labels.tolist() == [1, 0, 1]
    samples = [market.ReIDSample(paths[0], 12, 0), market.ReIDSample(paths[1], 40, 2)]
    assert datasets.from_samples(samples, None, EVAL).labels.tolist() == [12, 40]
    assert datasets.ImageDataset.from_samples(samples, [0, 1], EVAL).labels.tolist() == [0, 1]


def test_length_mismatch(images):
    paths, _ = images
    with pytest.raises(ValueError, match="4 image paths but 3 labels"):
        datasets.ImageDataset(paths, [0, 1, 2], EVAL)


def test_dataloader_batches(images):
    paths, _ = images
    ds = datasets.ImageDataset(paths, [0, 1, 2, 3], EVAL, cache=True)
    batches = list(paddle.io.DataLoader(ds, batch_size=3, shuffle=False, num_workers=0, return_list=True))
    x, y = batches[0]
    assert x.shape == [3, 3, 16, 8] and y.dtype == paddle.int64 and y.numpy().tolist() == [0, 1, 2]
    assert ds.cache_nbytes == 4 * 16 * 8 * 3


def first_batches_of_two_workers(ds, worker_init_fn):
    np.random.seed(0)
    loader = paddle.io.DataLoader(ds, batch_size=1, shuffle=False, num_workers=2, worker_init_fn=worker_init_fn,
                                  use_shared_memory=False, return_list=True)
    batches = [x.numpy() for x, _ in loader]
    return batches[0], batches[1]  # batch 0 comes from worker 0, batch 1 from worker 1


def test_seed_worker_gives_workers_different_streams(tmp_path):
    path = save_png(tmp_path / "same.png", np.random.default_rng(0).integers(0, 256, (16, 8, 3), dtype=np.uint8))
    train = transforms.build_transforms((3, 16, 8), train=True, seed=0)
    ds = datasets.ImageDataset([path] * 4, [0] * 4, train)
    a, b = first_batches_of_two_workers(ds, None)
    np.testing.assert_array_equal(a, b)  # the problem: both workers copied the same generator state
    a, b = first_batches_of_two_workers(ds, datasets.seed_worker)
    assert not np.array_equal(a, b)
    again = first_batches_of_two_workers(ds, datasets.seed_worker)
    np.testing.assert_array_equal(again[0], a)  # reproducible given np.random's seed
