"""Person re-identification protocols on disk: Market-1501 layout and folder-per-identity.

Market-1501 (Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015) keeps one folder
per split and encodes the labels in the file name, ``PPPP_cCsS_FFFFFF_BB.jpg``:

- ``PPPP``  person id; ``-1`` marks *junk* (bad detections, ignored by the evaluation) and ``0000`` marks
  *distractors* (false detections, counted as negatives; they stay in the gallery);
- ``cC``    camera number, 1-based in the name, 0-based (``C - 1``) in :class:`ReIDSample`;
- ``sS``    video sequence, ``FFFFFF`` frame, ``BB`` bounding box index (``00`` = hand drawn).

DukeMTMC-reID names its files ``0001_c2_f0046182.jpg``; the ``'duke'`` preset reads those. Any other
dataset works with a custom regular expression that has a named group ``pid`` and optionally ``cam``
(1-based camera number; without it every camid is -1, i.e. "unknown", which disables camera filtering).

Split folders (as in the Market-1501 release):

    root/bounding_box_train   training images (751 ids)
    root/query                query images (750 ids, one per id and camera at most)
    root/bounding_box_test    gallery: the test ids plus junk (-1) and distractors (0000)
"""
import collections
import os
import re

import numpy as np

ReIDSample = collections.namedtuple("ReIDSample", ["path", "pid", "camid"])
ReIDSample.__doc__ = ("One image: absolute ``path`` str, ``pid`` int (-1 junk, 0 distractor), "
                      "``camid`` int (0-based, -1 unknown).")

#: Named file-name patterns. Anchored at the start of the file name; they cover the whole name so a
#: stray file (``foo.jpg``) is reported instead of being read as some identity. Several extensions are
#: allowed because the Market-1501 release itself has 38 files named like ``1488_c1s6_023021_00.jpg.jpg``.
PATTERNS = {
    "market1501": r"^(?P<pid>-1|\d+)_c(?P<cam>\d+)s\d+_\d+_\d+(?:\.\w+)+$",
    "duke": r"^(?P<pid>-1|\d+)_c(?P<cam>\d+)_f\d+(?:\.\w+)+$",
}

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}

JUNK_PID = -1
DISTRACTOR_PID = 0


class MissingFolderError(FileNotFoundError, ValueError):
    """A dataset folder does not exist. Both a FileNotFoundError and a ValueError (bad input)."""


ReIDProtocol = collections.namedtuple("ReIDProtocol", ["train", "query", "gallery"])
ReIDProtocol.__doc__ = "The three splits of a ReID dataset, each a list of :class:`ReIDSample` sorted by file name."


def compile_pattern(pattern="market1501"):
    """Return a compiled file-name regex from a preset name, a regex string or a compiled regex.

    The regex must define the named group ``pid``; ``cam`` is optional. Raises ValueError otherwise.
    """
    if isinstance(pattern, re.Pattern):
        regex = pattern
    else:
        text = PATTERNS.get(pattern, pattern)
        try:
            regex = re.compile(text)
        except re.error as exc:
            raise ValueError("invalid file-name pattern %r (%s); presets: %s"
                             % (pattern, exc, ", ".join(PATTERNS))) from None
    if "pid" not in regex.groupindex:
        raise ValueError("file-name pattern %r has no named group 'pid'; use a preset (%s) or a regex like "
                         "r'(?P<pid>-?\\d+)_c(?P<cam>\\d+)'" % (regex.pattern, ", ".join(PATTERNS)))
    return regex


def parse_name(filename, pattern="market1501"):
    """``(pid, camid)`` from an image file name (directories are ignored); camid is 0-based, -1 if unknown.

    >>> parse_name("0002_c1s1_000451_03.jpg")
    (2, 0)
    >>> parse_name("-1_c3s1_000401_03.jpg")
    (-1, 2)
    >>> parse_name("0001_c2_f0046182.jpg", "duke")
    (1, 1)
    """
    regex = compile_pattern(pattern)
    name = os.path.basename(filename)
    match = regex.match(name)
    if match is None:
        raise ValueError("file name %r does not match the pattern %r" % (str(filename), regex.pattern))
    pid = int(match.group("pid"))
    camid = int(match.group("cam")) - 1 if "cam" in regex.groupindex and match.group("cam") is not None else -1
    return pid, camid


def is_image_file(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def list_images(directory):
    """Sorted image file names (not paths) in ``directory``; other files (Thumbs.db, readme) are ignored."""
    if not os.path.isdir(directory):
        raise MissingFolderError("image folder %r does not exist" % str(directory))
    return sorted(name for name in os.listdir(directory) if is_image_file(name))


def load_folder(directory, pattern="market1501"):
    """All images of one split folder as :class:`ReIDSample`, sorted by file name, labels from the names."""
    regex = compile_pattern(pattern)
    directory = os.path.abspath(directory)
    samples = []
    for name in list_images(directory):
        path = os.path.join(directory, name)
        pid, camid = parse_name(path, regex)
        samples.append(ReIDSample(path, pid, camid))
    return samples


EVALUATION_SPLITS = ("query", "gallery")


def load_protocol(root, pattern="market1501", drop_junk=True, splits=tuple(SPLIT_FOLDERS)):
    """Read ``root``'s train/query/gallery folders (Market-1501 layout) into a :class:`ReIDProtocol`.

    ``drop_junk`` removes pid -1 images (Market's gallery has 3,819); the evaluation ignores them anyway,
    so dropping them only saves feature extraction. Distractors (pid 0) always stay: they are negatives.
    ``splits`` names the folders read; the others are left empty, so evaluating (``EVALUATION_SPLITS``)
    needs no training folder.
    """
    regex = compile_pattern(pattern)
    if not os.path.isdir(root):
        raise MissingFolderError("dataset root %r does not exist" % str(root))
    samples_of = {}
    for split, folder in SPLIT_FOLDERS.items():
        samples = load_folder(os.path.join(root, folder), regex) if split in splits else []
        if drop_junk:
            samples = [s for s in samples if s.pid != JUNK_PID]
        samples_of[split] = samples
    return ReIDProtocol(**samples_of)


def relabel(samples):
    """Dense 0-based training labels: the i-th smallest pid becomes label i.

    Returns ``(labels, num_classes)``: an int64 array aligned with ``samples`` and the number of pids.
    """
    pids = np.fromiter((s.pid for s in samples), dtype=np.int64, count=len(samples))
    unique, labels = np.unique(pids, return_inverse=True)
    return labels.astype(np.int64), len(unique)


def load_identity_folders(root):
    """Folder-per-identity dataset ``root/<identity>/*.jpg`` (ImageFolder style).

    The pid is the index of the identity folder among the sorted folder names that hold at least one image
    (so pids are dense 0..N-1); camid is -1 for every image: no camera information, no camera filtering.
    Returns ``(samples, identity_names)`` with ``identity_names[pid]`` the folder name.
    """
    if not os.path.isdir(root):
        raise MissingFolderError("dataset root %r does not exist" % str(root))
    root = os.path.abspath(root)
    samples, names = [], []
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        if not os.path.isdir(folder):
            continue
        images = list_images(folder)
        if not images:
            continue
        pid = len(names)
        names.append(name)
        samples.extend(ReIDSample(os.path.join(folder, image), pid, -1) for image in images)
    if not samples:
        raise ValueError("no identity folders with images under %r (expected root/<identity>/*.jpg)" % root)
    return samples, names

