"""The one place image files are decoded and checked: training, evaluation, inference and the extractor.

Decoding is OpenCV's (``cv2.imdecode`` on the file's bytes). The project used to decode with Pillow on
evaluation's prefetch thread while training decoded with OpenCV; Pillow 13.0.0 crashed the process inside
``ImagingJpegDecode`` there (issue 16), so there is now a single decoder, the one training always used.

OpenCV's JPEG reader only *prints* "Premature end of JPEG file" for a truncated JPEG and returns a picture
whose missing part is grey, so :func:`read_image_bgr` checks explicitly that a JPEG ends with its EOI
marker (``FF D9``, trailing zero padding allowed). Everything else OpenCV refuses (garbage, truncated PNG,
zero-byte files, images over OpenCV's pixel limit) comes back as ``None`` or ``cv2.error`` and is reported.
Grayscale, CMYK, 16-bit and alpha images are converted to 8-bit 3-channel colour by ``IMREAD_COLOR``.

:func:`check_images` decodes every file once before any work starts, in parallel (OpenCV releases the GIL),
and remembers the files that decoded by (path, size, mtime) in a cache file under the user cache directory
(``$XDG_CACHE_HOME/paddle-reid/`` or ``~/.cache/paddle-reid/``), so a second run only ``stat`` s them.
"""
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from metric_learning.runtime import user_cache_dir

BAD_IMAGE_POLICIES = ("raise", "skip")
JPEG_SOI, JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
# bump when the decoder or its checks change: files verified by an older rule are checked again
CHECK_VERSION = 1
CACHE_FILE = "image_check_v%d.json" % CHECK_VERSION
MAX_LISTED = 20
# files verified in this process (path -> (size, mtime_ns)), so repeated datasets over them cost one stat each
_VERIFIED = {}


class BadImageError(ValueError):
    """An image file is missing or cannot be decoded; ``.path`` is the (first) file."""

    def __init__(self, path, reason):
        super().__init__("bad image %r: %s" % (str(path), reason))
        self.path = path


class BadImagesError(BadImageError):
    """Several unreadable images, all named (the first ``MAX_LISTED``); ``.bad`` is ``[(path, reason), ...]``."""

    def __init__(self, bad, total):
        lines = ["  %s: %s" % item for item in bad[:MAX_LISTED]]
        if len(bad) > MAX_LISTED:
            lines.append("  ... and %d more" % (len(bad) - MAX_LISTED))
        ValueError.__init__(self, "%d of %d images cannot be read (fix or remove them, or pass --on_bad_image skip "
                                  "to leave them out):\n%s" % (len(bad), total, "\n".join(lines)))
        self.path = bad[0][0]
        self.bad = bad


def read_image_bgr(path):
    """Decode ``path`` into an HWC uint8 BGR array (OpenCV's order), or raise :class:`BadImageError`."""
    path = str(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise BadImageError(path, "file does not exist") from None
    except IsADirectoryError:
        raise BadImageError(path, "is a directory") from None
    except OSError as exc:
        raise BadImageError(path, "cannot be read (%s)" % exc.strerror) from None
    if data.size == 0:
        raise BadImageError(path, "empty file (0 bytes)")
    head = data[:2].tobytes()
    if head == JPEG_SOI and np.trim_zeros(data[-4096:], "b")[-2:].tobytes() != JPEG_EOI:
        raise BadImageError(path, "corrupt image (truncated JPEG: no end-of-image marker)")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        if "CV_IO_MAX_IMAGE_PIXELS" in str(exc):   # a header announcing a decompression bomb
            raise BadImageError(path, "image too large (more pixels than OpenCV's CV_IO_MAX_IMAGE_PIXELS)") from None
        raise BadImageError(path, "corrupt image (%s)" % str(exc).strip().split("error: ")[-1]) from None
    if image is None:
        raise BadImageError(path, "not a readable image file" if head != JPEG_SOI else "corrupt image (JPEG)")
    return image


def read_image(path):
    """Decode ``path`` into an HWC uint8 RGB array, or raise :class:`BadImageError` naming the file."""
    return cv2.cvtColor(read_image_bgr(path), cv2.COLOR_BGR2RGB)


def _signature(path):
    """``(size, mtime_ns)`` of a regular file, or None when there is no such file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns) if os.path.isfile(path) else None


class _VerifiedCache:
    """Files known to decode, ``{directory: {name: [size, mtime_ns]}}`` in one JSON file."""

    def __init__(self, path):
        self.path = path
        self.entries = {}
        self.changed = False
        try:
            with open(path, encoding="utf-8") as f:
                self.entries = json.load(f)
        except (OSError, ValueError):
            pass  # no cache yet, or unreadable: everything is checked again

    def __contains__(self, item):
        path, signature = item
        directory, name = os.path.split(path)
        return tuple(self.entries.get(directory, {}).get(name, ())) == signature

    def add(self, path, signature):
        directory, name = os.path.split(path)
        self.entries.setdefault(directory, {})[name] = list(signature)
        self.changed = True

    def save(self):
        if not self.changed:
            return
        # forget folders that are gone (test and scratch directories), so the file does not only grow
        self.entries = {d: names for d, names in self.entries.items() if os.path.isdir(d)}
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            tmp = "%s.tmp-%d" % (self.path, os.getpid())
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self.entries, f, separators=(",", ":"))
            os.replace(tmp, self.path)   # atomic: a concurrent reader sees the old or the new cache
        except OSError:
            pass  # a read-only home only costs the next run a full check


def _check_one(path):
    try:
        read_image_bgr(path)
        return None
    except BadImageError as exc:
        return str(exc).split(": ", 1)[1]


def check_images(paths, on_bad_image="raise", log=None, cache_path=None, workers=None):
    """Decode every image of ``paths`` once, before any work; return the list of bad ``(path, reason)``.

    ``on_bad_image='raise'``: any bad file raises :class:`BadImagesError` naming them all (first 20 and a
    count). ``'skip'``: the bad files are returned for the caller to leave out (``log`` gets their count).
    Files that decoded before with the same size and mtime are not decoded again (see the module docstring;
    ``cache_path`` overrides the cache file, ``workers`` the thread count).
    """
    if on_bad_image not in BAD_IMAGE_POLICIES:
        raise ValueError("on_bad_image must be one of %s, got %r" % (BAD_IMAGE_POLICIES, on_bad_image))
    paths = [os.path.abspath(str(p)) for p in paths]
    bad, todo, cache = [], [], None
    for path in dict.fromkeys(paths):   # each file once, in order
        signature = _signature(path)
        if signature is None:
            bad.append((path, "file does not exist" if not os.path.isdir(path) else "is a directory"))
        elif _VERIFIED.get(path) != signature:
            todo.append((path, signature))
    if todo:
        cache = _VerifiedCache(cache_path or os.path.join(user_cache_dir(), CACHE_FILE))
        known = [item for item in todo if item in cache]
        _VERIFIED.update(known)
        todo = [item for item in todo if item not in cache]
    if todo:
        start = time.time()
        workers = workers or min(16, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2)
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for (path, signature), reason in zip(todo, pool.map(_check_one, [p for p, _ in todo], chunksize=64)):
                if reason is None:
                    cache.add(path, signature)
                    _VERIFIED[path] = signature
                else:
                    bad.append((path, reason))
        cache.save()
        if log and len(todo) >= 1000:
            log("checked %d images in %.1f s (remembered in %s, so the next run only stats them)"
                % (len(todo), time.time() - start, cache.path))
    if bad and on_bad_image == "raise":
        order = {path: i for i, path in enumerate(paths)}
        raise BadImagesError(sorted(bad, key=lambda item: order[item[0]]), len(paths))
    if bad and log:
        log("skipping %d unreadable images (--on_bad_image skip), e.g. %s: %s" % (len(bad), bad[0][0], bad[0][1]))
    return bad
