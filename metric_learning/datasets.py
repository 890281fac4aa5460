"""``paddle.io.Dataset`` over image files: decoding, bad-image handling and a decoded-image cache.

Decoding uses Pillow rather than ``cv2.imread``: OpenCV silently returns a half-grey image for a truncated
JPEG (it only prints "Premature end of JPEG file"), Pillow raises, so a damaged file is reported instead of
being trained on. Images come out as HWC uint8 RGB.

Bad images (missing, truncated, not an image):

- ``on_bad_image='raise'`` (default): missing files are reported when the dataset is built (one cheap
  ``stat`` per file); a file that exists but does not decode raises :class:`BadImageError` when it is read.
- ``on_bad_image='skip'``: every file is decoded once when the dataset is built (0.3 ms per Market-1501
  image, ~4 s for its training split; benchmarks/data_pipeline.py) and the bad ones are dropped, so
  ``len()``, ``labels`` and the samplers built from them never see a hole; labels are kept as given, not
  renumbered. ``num_skipped``, ``skipped_paths`` and ``kept_indices`` (the surviving positions in the input
  lists, to filter pids/camids alongside) report what happened. With ``cache=True`` the checked images go
  straight into the cache, so nothing is decoded twice.

Decoded-image cache (``cache=True``): the first read of each image stores it after resizing to the
transform's target size (``transform.resize``), so later epochs skip file I/O, JPEG decoding and resizing;
the random augmentation still runs on every read. Memory is ``N * H * W * 3`` bytes: Market-1501's 12,936
training images take 318 MB at 128x64 and 1.27 GB at 256x128 (its files are 128x64, so at 256x128 the
cache holds the upscaled copies). ``cache_nbytes`` reports the current size. benchmarks/data_pipeline.py on
Market-1501, one process on this project's 2-core machine: a training item costs 0.45 ms from disk and
0.17 ms from the cache at 128x64 (0.72 / 0.38 ms at 256x128); the cache saves decoding, not augmentation.

With ``DataLoader(num_workers=0)`` (the main process does the reading) the cache fills during the first
epoch. With workers, each worker process gets its own copy of the dataset: a cache filled inside a worker
dies with it at the end of the epoch (or is duplicated per worker with ``persistent_workers=True``). Call
:meth:`ImageDataset.fill_cache` in the main process *before* building the DataLoader instead: forked workers
then share the already decoded images copy-on-write.

Augmentation randomness in workers: pass ``worker_init_fn=seed_worker`` so each worker reseeds its copy of
the transform's generator (otherwise all workers would repeat the same random stream). With
``num_workers=0`` the transform's own generator is used, and ``transform.get_state()`` / ``set_state()``
make a resumed run continue the same stream.
"""
import os
import warnings

import numpy as np
import paddle
from PIL import Image

from metric_learning import listfile

BAD_IMAGE_POLICIES = ("raise", "skip")


class BadImageError(ValueError):
    """An image file is missing or cannot be decoded; ``.path`` is the file."""

    def __init__(self, path, reason):
        super().__init__("bad image %r: %s" % (str(path), reason))
        self.path = path


def read_image(path):
    """Decode ``path`` into an HWC uint8 RGB array, or raise :class:`BadImageError` naming the file."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))  # convert() forces the full decode: truncation raises here
    except FileNotFoundError:
        raise BadImageError(path, "file does not exist") from None
    except IsADirectoryError:
        raise BadImageError(path, "is a directory") from None
    except Image.UnidentifiedImageError:
        raise BadImageError(path, "not a readable image file") from None
    except (OSError, SyntaxError, ValueError) as exc:  # Pillow's "image file is truncated", "broken PNG file", ...
        raise BadImageError(path, "corrupt image (%s)" % exc) from None


class ImageDataset(paddle.io.Dataset):
    """Images and integer labels; ``dataset[i]`` is ``(transform(image) float32 CHW, np.int64 label)``.

    ``transform``: a callable HWC uint8 RGB -> CHW float32, e.g. ``transforms.build_transforms(...)``.
    See the module docstring for ``cache`` and ``on_bad_image``.
    """

    def __init__(self, paths, labels, transform, cache=False, on_bad_image="raise"):
        super().__init__()
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise ValueError("on_bad_image must be one of %s, got %r" % (BAD_IMAGE_POLICIES, on_bad_image))
        paths = [str(p) for p in paths]
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(paths) != len(labels):
            raise ValueError("got %d image paths but %d labels" % (len(paths), len(labels)))
        if not paths:
            raise ValueError("ImageDataset needs at least one image")
        self.transform = transform
        self.cache = cache
        self.skipped_paths = []
        if on_bad_image == "skip":
            kept, images = self._decode_all_keeping_good(paths)
        else:
            self._check_files_exist(paths)
            kept, images = np.arange(len(paths)), None
        self.kept_indices = kept
        self.paths = [paths[i] for i in kept]
        self.labels = labels[kept]
        self._cache = [None] * len(self.paths)
        if cache and images is not None:
            self._cache = images

    @staticmethod
    def _check_files_exist(paths):
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise BadImageError(missing[0], "file does not exist (%d of %d files are missing)"
                                % (len(missing), len(paths)))

    def _decode_all_keeping_good(self, paths):
        kept, images = [], []
        for i, path in enumerate(paths):
            try:
                image = self._prepare(read_image(path))
            except BadImageError:
                self.skipped_paths.append(path)
                continue
            kept.append(i)
            images.append(image if self.cache else None)
        if not kept:
            raise BadImageError(paths[0], "none of the %d images could be read" % len(paths))
        if self.skipped_paths:
            warnings.warn("skipped %d unreadable images, e.g. %s" % (len(self.skipped_paths), self.skipped_paths[0]))
        return np.asarray(kept, dtype=np.int64), images

    def _prepare(self, image):
        """The cacheable part: resize to the transform's target size when it has one."""
        resize = getattr(self.transform, "resize", None)
        return resize(image) if resize is not None else image

    @property
    def num_skipped(self):
        return len(self.skipped_paths)

    @property
    def cache_nbytes(self):
        """Bytes held by the decoded-image cache."""
        return sum(image.nbytes for image in self._cache if image is not None)

    def load_image(self, index):
        """The decoded (and, with a cache, resized) HWC uint8 RGB image, before the random augmentation."""
        image = self._cache[index]
        if image is None:
            image = self._prepare(read_image(self.paths[index]))
            if self.cache:
                self._cache[index] = image
        return image

    def fill_cache(self):
        """Decode every image now (requires ``cache=True``); do it before starting DataLoader workers."""
        if not self.cache:
            raise ValueError("fill_cache() needs an ImageDataset built with cache=True")
        for index in range(len(self.paths)):
            self.load_image(index)
        return self

    def __getitem__(self, index):
        return self.transform(self.load_image(index)), self.labels[index]

    def __len__(self):
        return len(self.paths)

    @classmethod
    def from_list_file(cls, list_path, root, transform, **kwargs):
        """Dataset of a list file (:mod:`metric_learning.listfile`); labels are the class ids made dense from 0."""
        paths, labels = listfile.records_to_paths_labels(listfile.read_list(list_path), root)
        return cls(paths, labels, transform, **kwargs)

    @classmethod
    def from_samples(cls, samples, labels, transform, **kwargs):
        """Dataset of :class:`~metric_learning.market.ReIDSample` s; ``labels=None`` uses the pids.

        For training pass dense labels, e.g. ``market.relabel(samples)[0]``.
        """
        if labels is None:
            labels = [s.pid for s in samples]
        return cls([s.path for s in samples], labels, transform, **kwargs)


from_list_file = ImageDataset.from_list_file
from_samples = ImageDataset.from_samples


def seed_worker(worker_id):
    """``DataLoader(worker_init_fn=seed_worker)``: give each worker its own augmentation stream.

    Every worker starts with a copy of the main process's transform generator. This reseeds the copy from
    ``(worker_info.seed, worker_id)``; Paddle draws ``worker_info.seed`` from the main process's global
    ``np.random`` once per DataLoader iterator, so streams differ between workers and epochs and repeat
    exactly when the trainer seeds ``np.random`` (and restores ``np.random.get_state()`` on resume).
    """
    info = paddle.io.get_worker_info()
    reseed = getattr(getattr(info.dataset, "transform", None), "seed", None)
    if reseed is not None:
        reseed(np.random.SeedSequence([info.seed, worker_id]))
