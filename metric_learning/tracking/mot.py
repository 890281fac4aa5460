"""The MOTChallenge format (MOT16 / MOT17 / MOT20 layout): the one reader of a sequence folder and the one reader
and writer of tracker results files.

    <sequence>/seqinfo.ini     [Sequence] name, imDir, frameRate, seqLength, imWidth, imHeight, imExt
    <sequence>/img1/000001.jpg the frames, numbered from 1
    <sequence>/gt/gt.txt       frame, id, left, top, width, height, consider flag, class, visibility
    <sequence>/det/det.txt     frame, -1, left, top, width, height, score[, x, y, z]
    results                    frame, id, left, top, width, height, conf, -1, -1, -1

Files count frames from 1; here frame ``t`` is 0-based (file frame ``t + 1``), as in
:class:`metric_learning.tracking.video.TrackingVideo`, whose interface :class:`MotSequence` shares, so
:func:`metric_learning.tracking.deepsort.run_tracker` runs on either. Boxes are ``(left, top, width, height)``
in pixels.

Ground truth, as the MOT17 evaluation reads it: the boxes to track are pedestrians (class 1) whose consider flag
is 1; boxes of the distractor classes (person on vehicle, static person, distractor, reflection) are *ignored*:
a prediction on one is dropped before scoring (:func:`metric_learning.tracking.metrics.on_ignored`). Everything
else (vehicles, occluders, pedestrians flagged 0) is left out.

A malformed row raises :class:`MotFormatError` naming the file and line, when the sequence is opened.
"""
import collections
import configparser
import os

import numpy as np

from metric_learning.data.images import read_image_bgr

PEDESTRIAN = 1
#: MOT17 classes whose boxes are ignored: person on vehicle, static person, distractor, reflection
DISTRACTOR_CLASSES = (2, 7, 8, 12)

SeqInfo = collections.namedtuple("SeqInfo", ["name", "image_dir", "frame_rate", "length", "width", "height",
                                             "image_ext"])
SeqInfo.__doc__ = "A sequence's ``seqinfo.ini``: frames per second, number of frames, frame size in pixels."


class MotFormatError(ValueError):
    """A MOTChallenge file that cannot be read; the message names the file (and line)."""


def read_seqinfo(path):
    """:class:`SeqInfo` of a ``seqinfo.ini``."""
    parser = configparser.ConfigParser()
    try:
        if not parser.read(path):
            raise MotFormatError("%s does not exist" % path)
    except configparser.Error as error:
        raise MotFormatError("%s is not an ini file: %s" % (path, error)) from None
    if not parser.has_section("Sequence"):
        raise MotFormatError("%s has no [Sequence] section" % path)
    section = parser["Sequence"]
    fields = dict(name=("name", str), image_dir=("imDir", str), frame_rate=("frameRate", float),
                  length=("seqLength", int), width=("imWidth", int), height=("imHeight", int),
                  image_ext=("imExt", str))
    values = {}
    for field, (key, kind) in fields.items():
        if key not in section:
            raise MotFormatError("%s: [Sequence] has no %s" % (path, key))
        try:
            values[field] = kind(section[key])
        except ValueError:
            raise MotFormatError("%s: %s = %r is not a%s %s" % (path, key, section[key],
                                                                "n" if kind is int else "", kind.__name__)) from None
    if values["length"] < 1 or values["width"] < 1 or values["height"] < 1:
        raise MotFormatError("%s: seqLength, imWidth and imHeight must be positive, got %d, %d, %d"
                             % (path, values["length"], values["width"], values["height"]))
    return SeqInfo(**values)


def read_rows(path, num_columns, num_frames):
    """float64 ``[n, num_columns]``: the first ``num_columns`` numbers of every line of a MOTChallenge text file.

    A line with fewer numbers, a value that is no finite number, a frame outside ``1..num_frames`` or a box
    without positive width and height raises :class:`MotFormatError` naming the file and line (1-based).
    """
    if not os.path.isfile(path):
        raise MotFormatError("%s does not exist" % path)
    rows = []
    with open(path) as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            fields = line.replace(" ", "").strip().split(",")
            where = "%s line %d" % (path, number)
            if len(fields) < num_columns:
                raise MotFormatError("%s: expected at least %d comma-separated numbers, got %d: %r"
                                     % (where, num_columns, len(fields), line.strip()))
            try:
                row = [float(value) for value in fields[:num_columns]]
            except ValueError:
                raise MotFormatError("%s: not a number in %r" % (where, line.strip())) from None
            if not np.isfinite(row).all():
                raise MotFormatError("%s: non-finite value in %r" % (where, line.strip()))
            if row[0] != int(row[0]) or not 1 <= row[0] <= num_frames:
                raise MotFormatError("%s: frame %g is not one of the sequence's frames 1-%d"
                                     % (where, row[0], num_frames))
            if row[4] <= 0 or row[5] <= 0:
                raise MotFormatError("%s: the box needs a positive width and height, got %g x %g"
                                     % (where, row[4], row[5]))
            rows.append(row)
    return np.array(rows, np.float64).reshape(-1, num_columns)


def _per_frame(rows, num_frames):
    """Row indices of each frame (0-based) of ``rows``, in file order."""
    frame = rows[:, 0].astype(np.int64) - 1
    order = np.argsort(frame, kind="stable")
    starts = np.searchsorted(frame[order], np.arange(num_frames + 1))
    return [order[starts[t]:starts[t + 1]] for t in range(num_frames)]


def _objects_per_frame(path, rows, num_frames):
    """``[(ids int64, boxes float64 [n, 4])]`` per frame from rows ``frame, id, l, t, w, h``; an id twice in one
    frame is an error naming the file."""
    frames = []
    for t, index in enumerate(_per_frame(rows, num_frames)):
        ids = rows[index, 1].astype(np.int64)
        if len(np.unique(ids)) != len(ids):
            twice = sorted({int(i) for i in ids if (ids == i).sum() > 1})
            raise MotFormatError("%s: frame %d lists id %s more than once" % (path, t + 1, twice[0]))
        frames.append((ids, rows[index, 2:6].copy()))
    return frames


def read_ground_truth(path, num_frames):
    """``(truth, ignored)`` of a ``gt.txt``: per frame, the pedestrians to track as ``(ids, boxes)`` and the
    ``[k, 4]`` boxes of distractor classes (see the module docstring)."""
    rows = read_rows(path, 8, num_frames)
    pedestrian = (rows[:, 7] == PEDESTRIAN) & (rows[:, 6] == 1)
    truth = _objects_per_frame(path, rows[pedestrian], num_frames)
    distractors = rows[np.isin(rows[:, 7], DISTRACTOR_CLASSES)]
    ignored = [distractors[index, 2:6] for index in _per_frame(distractors, num_frames)]
    return truth, ignored


def read_detections(path, num_frames, min_score=None):
    """``(boxes float32 [m, 4], scores float32 [m])`` per frame of a ``det.txt``, the rows scoring at least
    ``min_score`` (all when None)."""
    rows = read_rows(path, 7, num_frames)
    if min_score is not None:
        rows = rows[rows[:, 6] >= min_score]
    return [(rows[index, 2:6].astype(np.float32), rows[index, 6].astype(np.float32))
            for index in _per_frame(rows, num_frames)]


def write_results(path, predictions, confidence=1.0):
    """Write per-frame ``(track ids, boxes)`` as a MOTChallenge results file (one line per box, frame from 1,
    boxes to 0.01 px, ``confidence`` in the conf column, -1 in the 3D ones)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as out:
        for t, (ids, boxes) in enumerate(predictions):
            for track_id, (left, top, width, height) in zip(np.asarray(ids).tolist(), np.asarray(boxes).tolist()):
                out.write("%d,%d,%.2f,%.2f,%.2f,%.2f,%g,-1,-1,-1\n"
                          % (t + 1, track_id, left, top, width, height, confidence))


def read_results(path, num_frames):
    """Per-frame ``(track ids, boxes)`` of a MOTChallenge results file (what :func:`write_results` writes)."""
    return _objects_per_frame(path, read_rows(path, 6, num_frames), num_frames)


class MotSequence:
    """One MOTChallenge sequence folder: frames, public detections and (when ``gt/gt.txt`` exists) ground truth.

    ``min_score``: detections scoring below it are left out (None: all of them). Opening reads and checks
    ``seqinfo.ini``, ``det/det.txt``, ``gt/gt.txt`` and that every frame file exists; frames are decoded on
    demand (:meth:`frame`).
    """

    def __init__(self, directory, min_score=None):
        self.directory = directory
        self.info = read_seqinfo(os.path.join(directory, "seqinfo.ini"))
        self.name = self.info.name
        self.frame_paths = [os.path.join(directory, self.info.image_dir, "%06d%s" % (t + 1, self.info.image_ext))
                            for t in range(self.info.length)]
        missing = [path for path in self.frame_paths if not os.path.isfile(path)]
        if missing:
            raise MotFormatError("%s: seqLength is %d but %d frame files are missing, the first %s"
                                 % (os.path.join(directory, "seqinfo.ini"), self.info.length, len(missing), missing[0]))
        self._detections = [boxes for boxes, _ in read_detections(os.path.join(directory, "det", "det.txt"), len(self),
                                                                  min_score)]
        gt_path = os.path.join(directory, "gt", "gt.txt")
        self.truth, self.ignored = (read_ground_truth(gt_path, len(self)) if os.path.isfile(gt_path)
                                    else (None, None))

    def __len__(self):
        return self.info.length

    @property
    def has_ground_truth(self):
        return self.truth is not None

    def detections(self, t):
        """``[m, 4]`` float32 ltwh public detections of frame ``t`` (0-based)."""
        return self._detections[t]

    def ground_truth(self, t):
        """``(ids, boxes)`` of the pedestrians to track in frame ``t``."""
        if self.truth is None:
            raise FileNotFoundError("%s has no ground truth (gt/gt.txt)" % self.directory)
        return self.truth[t]

    def frame(self, t):
        """Frame ``t`` (0-based) as a BGR uint8 image."""
        if not 0 <= t < len(self):
            raise IndexError("frame %d is outside %s (0-%d)" % (t, self.name, len(self) - 1))
        return read_image_bgr(self.frame_paths[t])


def find_sequences(root):
    """Sorted paths of the sequence folders (those holding a ``seqinfo.ini``) under ``root``, or ``root`` itself
    when it is one."""
    if os.path.isfile(os.path.join(root, "seqinfo.ini")):
        return [root]
    if not os.path.isdir(root):
        raise FileNotFoundError("MOTChallenge folder %s does not exist" % root)
    found = sorted(os.path.join(root, name) for name in os.listdir(root)
                   if os.path.isfile(os.path.join(root, name, "seqinfo.ini")))
    if not found:
        raise FileNotFoundError("%s holds no MOTChallenge sequence (no <sequence>/seqinfo.ini)" % root)
    return found
