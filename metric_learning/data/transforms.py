"""Image transforms for ReID training and evaluation (numpy + OpenCV, no Paddle).

Input: an HWC uint8 RGB image. Output: a CHW float32 array normalised with the ImageNet mean/std.

Training pipeline (as in the strong ReID baselines, Luo et al. 2019 "Bag of Tricks", and fast-reid):
resize -> random horizontal flip -> zero pad + random crop back to size -> random erasing -> normalise.
Evaluation pipeline: resize -> normalise.

Randomness comes from one ``np.random.Generator`` owned by the :class:`ReIDTransform` (``.rng``), passed to
every random op, so a run is reproducible from a seed and resumable: ``get_state()`` / ``set_state()``
save and restore the generator exactly. DataLoader worker processes each start with a *copy* of the
generator; :func:`metric_learning.data.datasets.seed_worker` reseeds each copy differently.
"""
import copy

import cv2
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# the tensor that Normalize() makes, in the terms an export's .reid.json records for its consumers
NETWORK_INPUT = {"channel_order": "RGB", "pixel_scale": 1.0 / 255.0, "mean": list(IMAGENET_MEAN),
                 "std": list(IMAGENET_STD)}


def _check_image(image):
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = "%s %s" % (getattr(image, "shape", None), getattr(image, "dtype", type(image).__name__))
        raise ValueError("transforms expect an HWC uint8 RGB image, got %s" % desc)


class Resize:
    """Resize to ``(height, width)`` with OpenCV; an image already at that size is returned unchanged."""

    def __init__(self, size, interpolation=cv2.INTER_LINEAR):
        self.size = (int(size[0]), int(size[1]))
        self.interpolation = interpolation

    def __call__(self, image, rng=None):
        if image.shape[:2] == self.size:
            return image
        height, width = self.size
        return cv2.resize(image, (width, height), interpolation=self.interpolation)


class RandomHorizontalFlip:
    """Mirror left-right with probability ``prob``."""

    def __init__(self, prob=0.5):
        self.prob = prob

    def __call__(self, image, rng):
        return image[:, ::-1] if rng.random() < self.prob else image


class PadRandomCrop:
    """Zero-pad ``pad`` pixels on every side, then crop the original size at a uniformly random offset.

    Equivalent to a random translation by (dy, dx) in [-pad, pad]^2 with black fill.
    """

    def __init__(self, pad=10):
        self.pad = int(pad)

    def __call__(self, image, rng):
        height, width = image.shape[:2]
        padded = cv2.copyMakeBorder(image, self.pad, self.pad, self.pad, self.pad, cv2.BORDER_CONSTANT, value=0)
        top, left = rng.integers(0, 2 * self.pad + 1, size=2)
        return padded[top:top + height, left:left + width]


class RandomErasing:
    """Random Erasing (Zhong et al., "Random Erasing Data Augmentation", AAAI 2020, arXiv:1708.04896).

    With probability ``prob``, pick a rectangle of area ``S_e = U(area) * H * W`` and aspect ratio
    ``r_e = U(aspect)`` (height / width), i.e. ``h = round(sqrt(S_e * r_e))``, ``w = round(sqrt(S_e / r_e))``,
    and overwrite it. Candidates that do not fit or whose rounded area ``h * w`` falls outside ``area``
    are redrawn (up to ``max_attempts``; the paper's Algorithm 1), then the position is uniform over all
    positions where the rectangle fits. Paper defaults: p = 0.5, area 0.02-0.4, aspect 0.3-1/0.3.

    ``fill``: ``'random'`` (the paper's choice: i.i.d. uniform 0-255 per pixel and channel), ``'mean'``
    (the ImageNet mean colour (124, 116, 104), which normalises to ~0: what fast-reid/torchreid use), or an
    RGB triple. It works on the uint8 image, before normalisation.
    """

    def __init__(self, prob=0.5, area=(0.02, 0.4), aspect=(0.3, 1 / 0.3), fill="random", max_attempts=100):
        if isinstance(fill, str):
            if fill not in ("random", "mean"):
                raise ValueError("RandomErasing fill must be 'random', 'mean' or an RGB triple, got %r" % fill)
            fill = tuple(round(255 * m) for m in IMAGENET_MEAN) if fill == "mean" else fill
        else:
            fill = tuple(int(v) for v in fill)
        self.prob = prob
        self.area = area
        self.aspect = aspect
        self.fill = fill
        self.max_attempts = max_attempts

    def sample_rectangle(self, height, width, rng):
        """``(top, left, h, w)`` of a rectangle to erase, or None when no attempt fitted."""
        image_area = height * width
        for _ in range(self.max_attempts):
            target_area = rng.uniform(*self.area) * image_area
            aspect = rng.uniform(*self.aspect)
            h = int(round(np.sqrt(target_area * aspect)))
            w = int(round(np.sqrt(target_area / aspect)))
            if 0 < h <= height and 0 < w <= width and self.area[0] <= h * w / image_area <= self.area[1]:
                top = int(rng.integers(0, height - h + 1))
                left = int(rng.integers(0, width - w + 1))
                return top, left, h, w
        return None

    def __call__(self, image, rng):
        if rng.random() >= self.prob:
            return image
        rect = self.sample_rectangle(image.shape[0], image.shape[1], rng)
        if rect is None:
            return image
        top, left, h, w = rect
        image = image.copy()  # never write into the caller's array (it may be a cached decoded image)
        if isinstance(self.fill, str):  # 'random'
            image[top:top + h, left:left + w] = rng.integers(0, 256, size=(h, w, image.shape[2]), dtype=np.uint8)
        else:
            image[top:top + h, left:left + w] = np.asarray(self.fill, dtype=np.uint8)
        return image


class Normalize:
    """HWC uint8 -> CHW float32: ``(x * pixel_scale - mean) / std`` per channel (x / 255 and the ImageNet
    statistics by default); :meth:`batch` does the same for an NHWC batch."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD, pixel_scale=1.0 / 255.0):
        std = np.asarray(std, dtype=np.float64)
        # x * scale - offset with scale = pixel_scale / std, offset = mean / std, shaped to broadcast over CHW
        self.scale = (float(pixel_scale) / std).astype(np.float32).reshape(3, 1, 1)
        self.offset = (np.asarray(mean, dtype=np.float64) / std).astype(np.float32).reshape(3, 1, 1)

    def __call__(self, image, rng=None):
        # transposing the uint8 image first keeps the float maths on contiguous planes (10x faster than HWC)
        return self._scale(np.ascontiguousarray(image.transpose(2, 0, 1)).astype(np.float32))

    def batch(self, images):
        """NHWC uint8 -> NCHW float32."""
        return self._scale(np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32))

    def _scale(self, out):
        out *= self.scale
        out -= self.offset
        return out


class ReIDTransform:
    """``resize`` -> ``augment`` ops in order -> ``normalize``, drawing randomness from ``self.rng``.

    ``resize`` is a public attribute so a dataset can cache images already resized
    (:class:`metric_learning.data.datasets.ImageDataset` with ``cache=True``); resizing again is then a no-op.
    """

    def __init__(self, resize, augment=(), normalize=None, seed=None):
        self.resize = resize
        self.augment = list(augment)
        self.normalize = normalize or Normalize()
        self.rng = np.random.default_rng(seed)

    def __call__(self, image, rng=None):
        """``rng`` (a ``np.random.Generator``) overrides ``self.rng`` for this call: the trainer passes one
        seeded per (iteration, slot) so augmentation is reproducible whatever thread runs it."""
        _check_image(image)
        rng = self.rng if rng is None else rng
        image = self.resize(image)
        for op in self.augment:
            image = op(image, rng)
        return self.normalize(image)

    def seed(self, seed):
        """Restart the random stream from ``seed`` (an int, a sequence of ints or a ``np.random.SeedSequence``)."""
        self.rng = np.random.default_rng(seed)

    def get_state(self):
        """A copy of the generator state (a plain dict, picklable) for checkpoints."""
        return copy.deepcopy(self.rng.bit_generator.state)

    def set_state(self, state):
        """Continue exactly where :meth:`get_state` was called."""
        self.rng.bit_generator.state = state


def build_transforms(image_shape, train, flip_prob=0.5, pad=10, erase_prob=0.5, erase_fill="random", seed=None,
                     interpolation=cv2.INTER_LINEAR):
    """The ReID transform for ``image_shape`` = ``(3, H, W)`` (or ``(H, W)``), e.g. (3, 256, 128).

    ``train=False`` gives resize + normalise. ``train=True`` adds flip (``flip_prob``), pad + random crop
    (``pad`` pixels) and random erasing (``erase_prob``, fill ``erase_fill``); a zero probability or pad
    drops the op. ``seed`` seeds the transform's generator (None: fresh OS entropy).
    """
    shape = tuple(int(v) for v in image_shape)
    if len(shape) == 3:
        if shape[0] != 3:
            raise ValueError("image_shape must be (3, H, W) for RGB images, got %r" % (image_shape,))
        shape = shape[1:]
    if len(shape) != 2 or min(shape) <= 0:
        raise ValueError("image_shape must be (3, H, W) or (H, W) with positive sizes, got %r" % (image_shape,))
    augment = []
    if train:
        if flip_prob > 0:
            augment.append(RandomHorizontalFlip(flip_prob))
        if pad > 0:
            augment.append(PadRandomCrop(pad))
        if erase_prob > 0:
            augment.append(RandomErasing(erase_prob, fill=erase_fill))
    return ReIDTransform(Resize(shape, interpolation), augment, Normalize(), seed=seed)
