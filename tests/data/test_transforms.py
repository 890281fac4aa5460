import numpy as np
import pytest

from metric_learning.data import transforms as T


def random_image(height=128, width=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("shape", [(3, 256, 128), (3, 128, 64), (3, 128, 128), (96, 48)])
@pytest.mark.parametrize("train", [False, True])
def test_output_shape_and_dtype(shape, train):
    out = T.build_transforms(shape, train, seed=0)(random_image(100, 37))
    assert out.shape == (3,) + tuple(shape[-2:])
    assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]


def test_normalize_values_by_hand():
    image = np.zeros((2, 2, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 255, 0, 128
    image[1, 1] = (0, 255, 51)
    out = T.build_transforms((3, 2, 2), train=False)(image)
    # R: (255/255 - 0.485) / 0.229 = 2.248908; G: (0 - 0.456) / 0.224 = -2.035714;
    # B: (128/255 - 0.406) / 0.225 = 0.426492
    np.testing.assert_allclose(out[:, 0, 0], [2.248908, -2.035714, 0.426492], atol=1e-5)
    # pixel (1, 1) = (0, 255, 51): R -0.485/0.229 = -2.117904; G 0.544/0.224 = 2.428571;
    # B (0.2 - 0.406)/0.225 = -0.915556
    np.testing.assert_allclose(out[:, 1, 1], [-2.117904, 2.428571, -0.915556], atol=1e-5)


def test_resize_keeps_already_sized_image_and_resizes_others():
    resize = T.Resize((4, 2))
    image = random_image(4, 2)
    assert resize(image) is image
    big = np.repeat(np.repeat(image, 3, axis=0), 3, axis=1)  # each pixel becomes a 3x3 block
    np.testing.assert_array_equal(T.Resize((4, 2))(big), image)  # bilinear at block centres: exact


def test_flip_prob_one_mirrors_pixels_exactly():
    image = random_image()
    flip = T.build_transforms((3, 128, 64), train=True, flip_prob=1.0, pad=0, erase_prob=0, seed=3)
    plain = T.build_transforms((3, 128, 64), train=False)
    np.testing.assert_array_equal(flip(image), plain(image[:, ::-1]))
    keep = T.build_transforms((3, 128, 64), train=True, flip_prob=0.0, pad=0, erase_prob=0, seed=3)
    np.testing.assert_array_equal(keep(image), plain(image))


def shift_with_zero_fill(image, dy, dx):
    """Reference: out[y, x] = image[y + dy, x + dx], zero outside."""
    height, width = image.shape[:2]
    out = np.zeros_like(image)
    for y in range(height):
        for x in range(width):
            if 0 <= y + dy < height and 0 <= x + dx < width:
                out[y, x] = image[y + dy, x + dx]
    return out


def test_pad_random_crop_is_a_zero_filled_translation():
    image = random_image(12, 8) | 1  # no zero pixels, so the black border is unambiguous
    crop = T.PadRandomCrop(pad=3)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(60):
        out = crop(image, rng)
        assert out.shape == image.shape
        matches = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)
                   if np.array_equal(out, shift_with_zero_fill(image, dy, dx))]
        assert len(matches) == 1
        seen.add(matches[0])
    assert (-3, -3) in seen or (3, 3) in seen or (-3, 3) in seen or (3, -3) in seen  # extremes reachable
    assert len(seen) > 25  # 49 possible offsets, 60 draws


def erased_box(before, after):
    changed = np.any(before != after, axis=2)
    ys, xs = np.nonzero(changed)
    return changed, ys.min(), ys.max() + 1, xs.min(), xs.max() + 1


def test_random_erasing_changes_one_rectangle_with_area_and_aspect_in_bounds():
    image = np.zeros((128, 64, 3), np.uint8)
    erase = T.RandomErasing(prob=1.0, fill="mean")
    rng = np.random.default_rng(0)
    areas = []
    for _ in range(300):
        out = erase(image, rng)
        changed, y0, y1, x0, x1 = erased_box(image, out)
        assert changed[y0:y1, x0:x1].all() and changed.sum() == (y1 - y0) * (x1 - x0)  # exactly a rectangle
        assert (out[y0:y1, x0:x1] == (124, 116, 104)).all()  # round(255 * ImageNet mean)
        area = (y1 - y0) * (x1 - x0) / (128 * 64)
        assert 0.02 <= area <= 0.4
        # aspect h/w within 0.3..3.33, up to the rounding of h and w to whole pixels
        assert 0.3 * 0.8 <= (y1 - y0) / (x1 - x0) <= 3.34 * 1.25
        areas.append(area)
    assert min(areas) < 0.05 and max(areas) > 0.3  # the whole range is used
    assert not image.any()  # the input was not modified


def test_random_erasing_random_fill_and_probability():
    image = np.full((64, 32, 3), 77, np.uint8)
    rng = np.random.default_rng(1)
    erase = T.RandomErasing(prob=0.5, fill="random")
    erased = 0
    for _ in range(400):
        out = erase(image, rng)
        if np.array_equal(out, image):
            continue
        erased += 1
        changed, y0, y1, x0, x1 = erased_box(image, out)
        outside = changed.copy()
        outside[y0:y1, x0:x1] = False
        assert not outside.any()
        assert changed[y0:y1, x0:x1].mean() > 0.95  # random values equal 77 only by chance (1/256 per channel)
        assert out[y0:y1, x0:x1].std() > 50  # uniform 0..255 has std 73.9
    assert 170 <= erased <= 230  # p = 0.5 of 400, +-3 sigma


def test_seed_and_state_restore_reproduce_augmentation():
    image = random_image()
    first = T.build_transforms((3, 128, 64), train=True, seed=7)
    second = T.build_transforms((3, 128, 64), train=True, seed=7)
    a = [first(image) for _ in range(3)]
    for out in a:
        np.testing.assert_array_equal(out, second(image))
    state = first.get_state()
    b = [first(image) for _ in range(5)]
    first.set_state(state)
    for out in b:
        np.testing.assert_array_equal(out, first(image))
    assert not all(np.array_equal(x, y) for x, y in zip(b, b[1:]))  # the stream really is random
    first.seed(7)
    np.testing.assert_array_equal(first(image), a[0])


def test_bad_inputs():
    transform = T.build_transforms((3, 128, 64), train=False)
    with pytest.raises(ValueError, match="HWC uint8 RGB"):
        transform(np.zeros((128, 64), np.uint8))
    with pytest.raises(ValueError, match="HWC uint8 RGB"):
        transform(np.zeros((128, 64, 3), np.float32))
    with pytest.raises(ValueError, match="image_shape"):
        T.build_transforms((1, 128, 64), train=False)
    with pytest.raises(ValueError, match="image_shape"):
        T.build_transforms((3, 0, 64), train=False)
    with pytest.raises(ValueError, match="fill"):
        T.RandomErasing(fill="zeros")
