"""Tracking videos made from person crops, with ground truth, for measuring a tracker's identity keeping.

A video is a generated background (a vertical gradient plus blurred blobs) on which *walkers* move: each is
one identity of a ReID dataset, drawn as one of its crops resized to its box, and the crop changes every
``crop_period`` frames to another picture of the same person (other cameras, other moments), so a tracker
must recognise the person across appearance changes, as in a real video where pose and light change.
Walkers are drawn far to near (the lower the feet, the nearer), so nearer people occlude farther ones.

Ground truth: every walker's box (ltwh, integer pixels, clipped to the frame) and id (its dataset pid) in
every frame where at least ``min_visibility`` of its box is visible (not covered by nearer walkers nor
outside the frame). Detections: the same boxes, each dropped with probability ``drop_prob`` (detector
misses) and jittered by ``jitter`` (a fraction of the box size, Gaussian), from a seeded generator.

Everything derives from the seed: the same inputs and seed give the same boxes and the same frames.
Frames are rendered on demand (:meth:`TrackingVideo.frame`): a long video holds only its crops and boxes.
"""
import collections
import dataclasses

import cv2
import numpy as np

from metric_learning.data.images import read_image_bgr

Identity = collections.namedtuple("Identity", ["pid", "crops"])
Identity.__doc__ = "A person: dataset ``pid`` and a list of crops (BGR uint8 images) of them."

#: person height / image height at the bottom edge of the frame, and where that height would shrink to 0
#: (the horizon), both as fractions of the frame height: a simple ground-plane perspective
NEAR_HEIGHT = 0.62
HORIZON = 0.18
#: walking speed in person heights per frame: 1.4 m/s for a 1.7 m person at 25 frames/s
WALK_SPEED = 0.033


@dataclasses.dataclass
class Walker:
    """One person's path: per-frame centre x, feet y and box height from ``first_frame`` on; the crop shown
    changes every ``crop_period`` frames, cycling through ``identity.crops``."""
    identity: Identity
    first_frame: int
    centre_x: np.ndarray
    feet_y: np.ndarray
    height: np.ndarray
    crop_period: int = 50


def load_identities(samples, num_identities, crops_per_identity, rng, min_cameras=2):
    """``num_identities`` :class:`Identity` s with ``crops_per_identity`` crops each, read from ``samples``.

    ``samples``: ReIDSample s (path, pid, camid) such as ``market.load_protocol(root).gallery + .query``;
    junk (-1) and distractors (0) are left out. Only identities with that many images from at least
    ``min_cameras`` cameras qualify (camid -1, unknown, counts as one camera); crops are picked camera by
    camera in turn so each identity shows several viewpoints.
    """
    by_pid = collections.defaultdict(list)
    for sample in samples:
        if sample.pid > 0:
            by_pid[sample.pid].append(sample)
    eligible = [pid for pid in sorted(by_pid) if len(by_pid[pid]) >= crops_per_identity
                and len({s.camid for s in by_pid[pid]}) >= min_cameras]
    if len(eligible) < num_identities:
        raise ValueError("only %d identities have %d or more images from %d or more cameras; %d were asked for"
                         % (len(eligible), crops_per_identity, min_cameras, num_identities))
    identities = []
    for pid in rng.choice(eligible, size=num_identities, replace=False).tolist():
        chosen = _spread_over_cameras(by_pid[pid], crops_per_identity, rng)
        identities.append(Identity(pid, [read_image_bgr(sample.path) for sample in chosen]))
    return identities


def _spread_over_cameras(samples, count, rng):
    """``count`` of ``samples``, taking one per camera in turn (cameras and images in random order)."""
    by_camera = collections.defaultdict(list)
    for index in rng.permutation(len(samples)).tolist():
        by_camera[samples[index].camid].append(samples[index])
    queues = [by_camera[cam] for cam in rng.permutation(sorted(by_camera)).tolist()]
    chosen = []
    while len(chosen) < count:
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop())
    return chosen


def make_background(frame_size, rng):
    """A BGR uint8 scene: a vertical colour gradient with large blurred blobs (no edges a tracker could use)."""
    height, width = frame_size
    top, bottom = rng.uniform(60, 200, 3), rng.uniform(40, 160, 3)
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    scene = top * (1 - ramp) + bottom * ramp + np.zeros((1, width, 1), np.float32)
    blobs = cv2.resize(rng.normal(0, 25, (6, 10, 3)).astype(np.float32), (width, height),
                       interpolation=cv2.INTER_CUBIC)
    return np.clip(cv2.GaussianBlur(scene + blobs, (0, 0), 3), 0, 255).astype(np.uint8)


def person_height(feet_y, frame_height):
    """Box height of a person whose feet are at ``feet_y`` (ground-plane perspective, see NEAR_HEIGHT)."""
    return NEAR_HEIGHT * frame_height * (feet_y / frame_height - HORIZON) / (1.0 - HORIZON)


def random_walkers(identities, num_frames, frame_size, rng, arrival_interval=40, crop_period=50,
                   speed_change_interval=80, ground=(0.55, 0.97), slant=0.001):
    """Walkers crossing the frame from either side, one per identity, arriving every ``arrival_interval``
    frames on average (exponential gaps; the first ones are already under way at frame 0).

    Feet start at a random height within ``ground`` (fractions of the frame height) and drift up or down
    by up to ``slant`` frame heights per frame. Pace starts at 0.6-1.3 times :data:`WALK_SPEED` and on
    average every ``speed_change_interval`` frames changes (a fifth of the changes are stops), which a
    constant-velocity motion model does not foresee. Walkers stop arriving when the identities or the
    frames run out.
    """
    height, width = frame_size
    low, high = ground[0] * height, ground[1] * height
    walkers, start = [], -int(width / (WALK_SPEED * person_height(low, height)) / 2)
    for identity in identities:
        start += int(rng.exponential(arrival_interval))
        if start >= num_frames:
            break
        length = num_frames - start         # frames after the end of the video are never shown
        direction = rng.choice([-1.0, 1.0])
        feet_y = np.clip(rng.uniform(low, high) + rng.uniform(-slant, slant) * height * np.arange(length), low, high)
        box_height = person_height(feet_y, height)
        pace = _pace(length, rng, speed_change_interval) * rng.uniform(0.6, 1.3)
        half_width = box_height * 0.25     # ReID crops are 2:1 (Market-1501's 128x64); only decides the exit
        first_x = -half_width[0] if direction > 0 else width + half_width[0]
        steps = np.concatenate([[0.0], np.cumsum(pace * WALK_SPEED * box_height)[:-1]])
        centre_x = first_x + direction * steps
        gone = np.nonzero((centre_x[1:] - half_width[1:] > width) | (centre_x[1:] + half_width[1:] < 0))[0]
        end = gone[0] + 1 if len(gone) else length
        walkers.append(Walker(identity, start, centre_x[:end], feet_y[:end], box_height[:end], crop_period))
    return walkers


def _pace(length, rng, change_interval):
    """Per-frame speed factor: 1 at first, then a new level at exponentially spaced change frames."""
    changes = np.cumsum(rng.exponential(change_interval, size=int(2 * length / change_interval) + 2))
    changes = changes[changes < length]
    levels = np.where(rng.random(len(changes)) < 0.2, 0.0, rng.uniform(0.3, 1.5, len(changes)))
    return np.concatenate([[1.0], levels])[np.searchsorted(changes, np.arange(length), side="right")]


class TrackingVideo:
    """Boxes, ids and detections of a video whose frames are rendered on demand; see the module docstring.

    Per-object arrays (one row per walker per frame it is on screen, sorted by frame, then far to near):
    ``frame_index``, ``pid``, ``box`` (full box ltwh, may reach past the frame edges), ``visible_box``
    (clipped to the frame), ``visibility`` (seen fraction of the full box), ``crop`` (index into ``crops``).
    Detections: ``det_frame_index``, ``det_pid`` (the walker it came from; never given to a tracker) and
    ``det_box`` (float ltwh).
    """

    def __init__(self, walkers, num_frames, frame_size, background, seed=0, min_visibility=0.5, drop_prob=0.0,
                 jitter=0.0):
        if tuple(background.shape[:2]) != tuple(frame_size):
            raise ValueError("the background is %s but the frame size is %s"
                             % (tuple(background.shape[:2]), tuple(frame_size)))
        if not (0.0 < min_visibility <= 1.0 and 0.0 <= drop_prob < 1.0 and jitter >= 0.0):
            raise ValueError("need 0 < min_visibility <= 1, 0 <= drop_prob < 1 and jitter >= 0; got %r, %r, %r"
                             % (min_visibility, drop_prob, jitter))
        self.num_frames, self.frame_size, self.background = int(num_frames), tuple(frame_size), background
        self.min_visibility = min_visibility
        if not walkers:
            raise ValueError("a video needs at least one walker")
        self._layout(walkers)
        self._measure_visibility()
        self._detect(np.random.default_rng([seed, 7]), drop_prob, jitter)

    def __len__(self):
        return self.num_frames

    def _layout(self, walkers):
        self.crops = []
        frame_index, pid, box, crop, depth = [], [], [], [], []
        for walker in walkers:
            crops = walker.identity.crops
            steps = np.arange(len(walker.centre_x))
            frames = walker.first_frame + steps
            keep = (frames >= 0) & (frames < self.num_frames)
            which = (steps[keep] // walker.crop_period) % len(crops)
            heights = np.round(walker.height[keep])
            widths = np.round(heights * np.array([c.shape[1] / c.shape[0] for c in crops])[which])
            left = np.round(walker.centre_x[keep] - widths / 2)
            top = np.round(walker.feet_y[keep]) - heights
            frame_index.append(frames[keep])
            pid.append(np.full(len(which), walker.identity.pid))
            box.append(np.stack([left, top, widths, heights], axis=1))
            crop.append(len(self.crops) + which)
            depth.append(walker.feet_y[keep])
            self.crops.extend(crops)
        frame_index, depth = np.concatenate(frame_index).astype(np.int64), np.concatenate(depth)
        order = np.lexsort((depth, frame_index))       # by frame, then far (feet higher up) to near
        self.frame_index = frame_index[order]
        self.pid = np.concatenate(pid).astype(np.int64)[order]
        self.box = np.concatenate(box).astype(np.int64)[order]
        self.crop = np.concatenate(crop).astype(np.int64)[order]
        self._starts = np.searchsorted(self.frame_index, np.arange(self.num_frames + 1))
        height, width = self.frame_size
        top_left = np.clip(self.box[:, :2], 0, None)
        bottom_right = np.minimum(self.box[:, :2] + self.box[:, 2:], [width, height])
        self.visible_box = np.concatenate([top_left, np.clip(bottom_right - top_left, 0, None)], axis=1)

    def _rows(self, t):
        return slice(self._starts[t], self._starts[t + 1])

    def _measure_visibility(self):
        """Paint each frame's boxes far to near into an owner map; a walker sees the pixels it still owns."""
        self.visibility = np.zeros(len(self.frame_index))
        owner = np.empty(self.frame_size, np.int32)
        for t in range(self.num_frames):
            rows = self._rows(t)
            owner.fill(-1)
            for k, (left, top, w, h) in enumerate(self.visible_box[rows].tolist()):
                owner[top:top + h, left:left + w] = k
            seen = np.bincount(owner[owner >= 0], minlength=rows.stop - rows.start)
            self.visibility[rows] = seen / np.prod(self.box[rows, 2:], axis=1)

    def _detect(self, rng, drop_prob, jitter):
        detected = (self.visibility >= self.min_visibility) & (rng.random(len(self.visibility)) >= drop_prob)
        boxes = self.visible_box[detected].astype(np.float64)
        noise = rng.normal(0.0, jitter, boxes.shape)
        centre = boxes[:, :2] + boxes[:, 2:] * (0.5 + noise[:, :2])
        size = boxes[:, 2:] * np.exp(noise[:, 2:])
        height, width = self.frame_size
        top_left = np.clip(centre - size / 2, 0, None)
        box = np.concatenate([top_left, np.minimum(centre + size / 2, [width, height]) - top_left], axis=1)
        # a box jittered off the frame is no detection (and DeepSORT would drop it without its embedding)
        inside = np.all(box[:, 2:] >= 1.0, axis=1)
        self.det_frame_index = self.frame_index[detected][inside]
        self.det_pid = self.pid[detected][inside]
        self.det_box = box[inside].astype(np.float32)
        self._det_starts = np.searchsorted(self.det_frame_index, np.arange(self.num_frames + 1))

    def ground_truth(self, t):
        """``(pids [n], boxes [n, 4] ltwh)`` of the walkers visible enough in frame ``t``."""
        rows = self._rows(t)
        shown = self.visibility[rows] >= self.min_visibility
        return self.pid[rows][shown], self.visible_box[rows][shown].astype(np.float64)

    def detections(self, t):
        """``[m, 4]`` float32 ltwh detector boxes of frame ``t``."""
        return self.det_box[self._det_starts[t]:self._det_starts[t + 1]]

    def detection_pids(self, t):
        """The walker each detection of frame ``t`` came from (for analysis and tests, not for trackers)."""
        return self.det_pid[self._det_starts[t]:self._det_starts[t + 1]]

    def frame(self, t):
        """Frame ``t`` as a BGR uint8 image: the background with the walkers' crops pasted far to near."""
        if not 0 <= t < self.num_frames:
            raise IndexError("frame %d is outside the video (0-%d)" % (t, self.num_frames - 1))
        image = self.background.copy()
        rows = self._rows(t)
        for (left, top, w, h), (vl, vt, vw, vh), crop in zip(self.box[rows].tolist(), self.visible_box[rows].tolist(),
                                                             self.crop[rows].tolist()):
            if vw and vh:
                person = cv2.resize(self.crops[crop], (w, h), interpolation=cv2.INTER_LINEAR)
                image[vt:vt + vh, vl:vl + vw] = person[vt - top:vt - top + vh, vl - left:vl - left + vw]
        return image


def generate_video(identities, num_frames, frame_size=(360, 640), seed=0, min_visibility=0.5, drop_prob=0.0,
                   jitter=0.0, **walk_options):
    """A :class:`TrackingVideo` of random walkers (:func:`random_walkers` options) on a generated background."""
    background = make_background(frame_size, np.random.default_rng([seed, 0]))
    walkers = random_walkers(identities, num_frames, frame_size, np.random.default_rng([seed, 1]), **walk_options)
    return TrackingVideo(walkers, num_frames, frame_size, background, seed, min_visibility, drop_prob, jitter)
