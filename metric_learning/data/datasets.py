"""``paddle.io.Dataset`` over image files: decoding, bad-image handling and a decoded-image cache.

Images are decoded by :mod:`metric_learning.data.images` (OpenCV, with an explicit truncated-JPEG check) into
HWC uint8 RGB.

Bad images (missing, truncated, not an image) are found when the dataset is built: every file is decoded
once by :func:`metric_learning.data.images.check_images`, in parallel and cached by (path, size, mtime), so a
second run only ``stat`` s them.

- ``on_bad_image='raise'`` (default): one :class:`BadImagesError` names every bad file (the first 20 and a
  count).
- ``on_bad_image='skip'``: the bad files are dropped, so ``len()``, ``labels`` and the samplers built from
  them never see a hole; labels are kept as given, not renumbered. ``num_skipped``, ``skipped_paths`` and
  ``kept_indices`` (the surviving positions in the input lists, to filter pids/camids alongside) report
  what happened.

Decoded-image cache (``cache=True``): the first read of each image stores it after resizing to the
transform's target size (``transform.resize``), so later epochs skip file I/O, JPEG decoding and resizing;
the random augmentation still runs on every read. Memory is ``N * H * W * 3`` bytes: Market-1501's 12,936
training images take 318 MB at 128x64 and 1.27 GB at 256x128 (its files are 128x64, so at 256x128 the
cache holds the upscaled copies). ``cache_nbytes`` reports the current size. benchmarks/data_pipeline.py on
Market-1501 (measured with the earlier Pillow decoder), one process on this project's 2-core machine: a
training item costs 0.45 ms from disk and 0.17 ms from the cache at 128x64 (0.72 / 0.38 ms at 256x128); the
cache saves decoding, not augmentation.

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

from metric_learning.data import listfile
from metric_learning.data.images import BadImageError, check_images, read_image


class ImageDataset(paddle.io.Dataset):
    """Images and integer labels; ``dataset[i]`` is ``(transform(image) float32 CHW, np.int64 label)``.

    ``transform``: a callable HWC uint8 RGB -> CHW float32, e.g. ``transforms.build_transforms(...)``.
    See the module docstring for ``cache`` and ``on_bad_image``.
    """

    def __init__(self, paths, labels, transform, cache=False, on_bad_image="raise"):
        super().__init__()
        paths = [str(p) for p in paths]
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(paths) != len(labels):
            raise ValueError("got %d image paths but %d labels" % (len(paths), len(labels)))
        if not paths:
            raise ValueError("ImageDataset needs at least one image")
        self.transform = transform
        self.cache = cache
        bad = {path for path, _ in check_images(paths, on_bad_image)}
        kept = [i for i, path in enumerate(paths) if os.path.abspath(path) not in bad]
        if not kept:
            raise BadImageError(paths[0], "none of the %d images could be read" % len(paths))
        self.skipped_paths = [path for path in paths if os.path.abspath(path) in bad]
        if self.skipped_paths:
            warnings.warn("skipped %d unreadable images, e.g. %s" % (len(self.skipped_paths), self.skipped_paths[0]))
        self.kept_indices = np.asarray(kept, dtype=np.int64)
        self.paths = [paths[i] for i in kept]
        self.labels = labels[kept]
        self._cache = [None] * len(self.paths)

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
        """Dataset of a list file (:mod:`metric_learning.data.listfile`); labels are the class ids made dense from 0."""
        paths, labels = listfile.records_to_paths_labels(listfile.read_list(list_path), root)
        return cls(paths, labels, transform, **kwargs)

    @classmethod
    def from_samples(cls, samples, labels, transform, **kwargs):
        """Dataset of :class:`~metric_learning.data.market.ReIDSample` s; ``labels=None`` uses the pids.

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
