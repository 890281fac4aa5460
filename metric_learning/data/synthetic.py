"""Procedural synthetic person re-identification data in the Market-1501 layout.

Why: the demo and the tests need a ReID dataset that ships with the code (Market-1501's licence forbids
redistribution). Each *identity* is a cartoon person drawn with OpenCV; each *camera* sees it differently.

Identity (fixed per person): clothing colours drawn from a small shared palette (so many people share a
colour and only the combination identifies them), upper-body pattern (plain, horizontal or vertical stripes,
checks) with a second colour, sleeve length, lower garment (trousers, shorts, skirt), shoes, skin and hair
colour, hair length, body proportions (head, torso, legs, shoulder and hip width), accessories (backpack,
shoulder bag, hand bag, cap).

Camera (fixed per camera): colour cast (per-channel gain), brightness and gamma, defocus blur, sensor noise,
JPEG quality, typical person scale, preferred viewpoints (front/back/side), a background texture and
clutter, and how often something occludes the person.

Image (random per picture): viewpoint, walking phase, position and scale jitter (looser for detector boxes
than for the hand-drawn query boxes), lighting jitter, background clutter, occlusion.

Layout (as Market-1501, see :mod:`metric_learning.data.market`): ``bounding_box_train`` (train ids),
``query`` (one hand-drawn box per test id and camera, box index 00), ``bounding_box_test`` (the other test
images plus junk ``-1``: boxes that show only a sliver of a test person, and distractors ``0000``:
background or a partial stranger), ``gt_bbox`` (every train and test identity image, box index 00).
Names are ``PPPP_cCsS_FFFFFF_BB.jpg``; images are 128x64 (H x W) JPEGs by default, rendered at twice the size
and downsampled (anti-aliasing). Everything derives from ``seed``: the same seed gives identical bytes.

The difficulty is set so that raw pixels retrieve poorly across cameras (backgrounds, colour casts, pose
and scale dominate pixel distances) while clothing colours still separate identities, which a network can
learn. benchmarks/synthetic_difficulty.py on the default set (seed 0: 60 + 60 ids, 6 cameras; 247
queries, chance Rank-1 1.7%), cross-camera Rank-1 / mAP: raw pixels 10.5% / 5.9%, RGB histograms
7.7% / 5.8%, the same histograms after an LDA fitted on the training ids 31.2% / 23.5%; a small 8-layer
probe CNN from random initialisation 2.8% / 2.7% untrained, 12.6% / 12.4% after 5 and 39.7% / 31.4% after
10 epochs of softmax training. tests/test_synthetic.py checks the raw-pixel and histogram properties.
"""
import dataclasses
import json
import os
import shutil

import cv2
import numpy as np

from metric_learning.data import market

#: Clothing palette (RGB). Deliberately small: identities collide on single colours.
CLOTHING_COLOURS = np.array([
    (20, 20, 22), (235, 235, 230), (128, 128, 128), (30, 40, 90), (40, 90, 190), (190, 30, 35),
    (110, 20, 30), (40, 120, 50), (100, 110, 40), (230, 200, 40), (200, 180, 130), (110, 70, 40),
    (230, 120, 160), (110, 50, 140), (240, 130, 30), (130, 190, 230),
], dtype=np.float32)
SKIN_COLOURS = np.array([(240, 200, 170), (220, 170, 130), (180, 120, 80), (110, 70, 45)], dtype=np.float32)
HAIR_COLOURS = np.array([(15, 12, 10), (70, 40, 20), (200, 170, 90), (160, 160, 160)], dtype=np.float32)
UPPER_PATTERNS = ("plain", "hstripes", "vstripes", "checks")
LOWER_GARMENTS = ("trousers", "shorts", "skirt")
BAGS = ("none", "backpack", "shoulder", "hand")
VIEWS = ("front", "back", "side")
BACKGROUND_KINDS = ("noise", "tiles", "gradient", "bricks")
RENDER_SCALE = 2  # draw at 2x the output size, then downsample
SPLIT_FOLDERS = ("bounding_box_train", "query", "bounding_box_test", "gt_bbox")
JUNK_FRACTION = 0.15  # junk boxes per test gallery image (Market-1501 has 0.29: 3,819 / 13,115)
DISTRACTOR_FRACTION = 0.12  # distractor boxes per test gallery image (Market-1501 has 0.21: 2,798 / 13,115)
META_FILE = "synthetic.json"


@dataclasses.dataclass
class Identity:
    """One person's appearance (colours are float RGB triples)."""
    upper: np.ndarray
    upper2: np.ndarray
    pattern: str
    stripe_period: float  # fraction of the person height
    long_sleeves: bool
    lower: np.ndarray
    garment: str
    shoes: np.ndarray
    skin: np.ndarray
    hair: np.ndarray
    long_hair: bool
    head: float  # head radius / person height
    torso: float  # torso length / person height
    shoulders: float  # shoulder width / person height
    hips: float  # hip width / person height
    bag: str
    bag_colour: np.ndarray
    cap: bool
    cap_colour: np.ndarray


@dataclasses.dataclass
class Camera:
    """One camera's optics, lighting and scene."""
    gains: np.ndarray  # per-channel colour cast
    brightness: float
    gamma: float
    blur: float  # Gaussian sigma in output pixels
    noise: float  # Gaussian sensor noise, grey levels
    jpeg_quality: int
    scale: float  # typical person height / image height
    view_probs: np.ndarray
    background: np.ndarray  # base colour
    background2: np.ndarray  # texture colour
    background_kind: str
    clutter: np.ndarray  # colours of background clutter
    occlusion_prob: float


def _colour(rng, palette, jitter=18.0):
    """A palette colour with a small per-identity shift, so equal palette entries are not pixel-identical."""
    return np.clip(palette[rng.integers(len(palette))] + rng.normal(0, jitter, 3), 0, 255).astype(np.float32)


def sample_identity(rng):
    """A random person's appearance."""
    return Identity(
        upper=_colour(rng, CLOTHING_COLOURS), upper2=_colour(rng, CLOTHING_COLOURS),
        pattern=UPPER_PATTERNS[rng.choice(4, p=[0.4, 0.25, 0.15, 0.2])],
        stripe_period=rng.uniform(0.04, 0.09), long_sleeves=bool(rng.random() < 0.6),
        lower=_colour(rng, CLOTHING_COLOURS), garment=LOWER_GARMENTS[rng.choice(3, p=[0.65, 0.2, 0.15])],
        shoes=_colour(rng, CLOTHING_COLOURS[[0, 1, 2, 11, 3]]), skin=_colour(rng, SKIN_COLOURS, 8),
        hair=_colour(rng, HAIR_COLOURS, 8), long_hair=bool(rng.random() < 0.35),
        head=rng.uniform(0.06, 0.075), torso=rng.uniform(0.28, 0.35), shoulders=rng.uniform(0.22, 0.32),
        hips=rng.uniform(0.17, 0.23), bag=BAGS[rng.choice(4, p=[0.4, 0.25, 0.2, 0.15])],
        bag_colour=_colour(rng, CLOTHING_COLOURS), cap=bool(rng.random() < 0.2),
        cap_colour=_colour(rng, CLOTHING_COLOURS))


def sample_camera(rng):
    """A random camera: lighting, optics and scene."""
    views = rng.dirichlet([1.5, 1.5, 1.0])
    return Camera(
        gains=rng.uniform(0.7, 1.3, 3).astype(np.float32), brightness=rng.uniform(0.65, 1.2),
        gamma=rng.uniform(0.75, 1.35),
        blur=rng.uniform(0.0, 1.2), noise=rng.uniform(2.0, 8.0), jpeg_quality=int(rng.integers(70, 96)),
        scale=rng.uniform(0.78, 0.95), view_probs=views,
        background=rng.uniform(40, 200, 3).astype(np.float32), background2=rng.uniform(40, 200, 3).astype(np.float32),
        background_kind=BACKGROUND_KINDS[rng.integers(len(BACKGROUND_KINDS))],
        clutter=rng.uniform(20, 235, (4, 3)).astype(np.float32), occlusion_prob=rng.uniform(0.05, 0.3))


def _grid(height, width):
    """Row and column coordinates shaped (H, 1) and (1, W): they broadcast to the image without a full grid."""
    return np.arange(height, dtype=np.float32)[:, None], np.arange(width, dtype=np.float32)[None, :]


def render_background(camera, rng, height, width):
    """The camera's scene: base colour + texture (randomly shifted per image) + a few clutter objects."""
    yy, xx = _grid(height, width)
    kind = camera.background_kind
    if kind == "noise":
        blobs = cv2.resize(rng.normal(0, 1, (6, 4)).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
        mix = np.clip(0.5 + 0.35 * blobs, 0, 1)
    elif kind == "tiles":
        period = rng.uniform(18, 30)
        oy, ox = rng.uniform(0, period, 2)
        mix = (((yy + oy) % period < 3) | ((xx + ox) % period < 3)).astype(np.float32)
    elif kind == "gradient":
        mix = np.clip(yy / height + rng.uniform(-0.3, 0.3), 0, 1)
    else:  # bricks: rows of offset blocks
        rows = ((yy + rng.uniform(0, 16)) // 16).astype(np.int32)
        shifted = xx + (rows % 2) * 16 + rng.uniform(0, 32)
        mix = (((yy + 0.5) % 16 < 2.5) | (shifted % 32 < 2.5)).astype(np.float32)
    # colour = background + mix * (background2 - background), as a per-channel lookup on the quantised mix
    mix = np.ascontiguousarray(np.broadcast_to(np.round(mix * 255).astype(np.uint8), (height, width)))
    ramp = np.linspace(0, 1, 256, dtype=np.float32)[:, None]
    lut = np.round(camera.background + ramp * (camera.background2 - camera.background)).astype(np.uint8)
    image = cv2.LUT(cv2.merge([mix, mix, mix]), lut.reshape(1, 256, 3))
    for _ in range(rng.integers(0, 4)):  # poles, signs, bins
        colour = camera.clutter[rng.integers(len(camera.clutter))]
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(4, width // 3)), int(rng.integers(8, height // 2))
        cv2.rectangle(image, (x0, y0), (x0 + w, y0 + h), colour.tolist(), -1)
    return image


def _paint_upper(image, identity, polygon, top, person_height):
    """Fill the torso ``polygon`` with the upper garment: plain, stripes or checks in person-relative units."""
    x0, y0, w, h = cv2.boundingRect(polygon)
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x0 + w, image.shape[1]), min(y0 + h, image.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [polygon], 1, offset=(-x0, -y0))
    yy, xx = _grid(y1 - y0, x1 - x0)
    period = max(identity.stripe_period * person_height, 3.0)
    hbands = ((yy + y0 - top) // period) % 2 == 1
    vbands = (xx + x0) // period % 2 == 1
    second = {"plain": np.zeros((1, 1), bool), "hstripes": hbands, "vstripes": vbands,
              "checks": hbands ^ vbands}[identity.pattern]
    colours = np.where(second[..., None], identity.upper2, identity.upper)
    np.copyto(image[y0:y1, x0:x1], np.round(colours).astype(np.uint8), where=mask.astype(bool)[..., None])


def _limb(image, start, end, thickness, colour):
    cv2.line(image, tuple(int(round(v)) for v in start), tuple(int(round(v)) for v in end), colour.tolist(),
             max(int(round(thickness)), 1), cv2.LINE_AA)


def _box(image, x0, y0, x1, y1, colour):
    cv2.rectangle(image, (int(x0), int(y0)), (int(x1), int(y1)), colour.tolist(), -1)


@dataclasses.dataclass
class _Body:
    """Where one rendered person's parts are, in canvas pixels."""
    h: float  # person height
    cx: float  # body centre line
    feet_y: float
    view: str
    facing: int  # side view: -1 walks left, +1 right
    phase: float  # walking phase in [-1, 1]: leg stride and arm swing
    head_r: float
    shoulder_y: float
    hip_y: float
    sw: float  # half shoulder width
    hw: float  # half hip width


def _layout_body(identity, rng, view, person_height, centre_x, feet_y):
    h = person_height
    width_factor = 0.55 if view == "side" else 1.0  # seen from the side, the body is narrower
    head_r = identity.head * h
    shoulder_y = feet_y - h + 2 * head_r + 0.02 * h
    return _Body(h=h, cx=centre_x, feet_y=feet_y, view=view, facing=int(rng.choice([-1, 1])), phase=rng.uniform(-1, 1),
                 head_r=head_r, shoulder_y=shoulder_y, hip_y=shoulder_y + identity.torso * h,
                 sw=identity.shoulders * h / 2 * width_factor, hw=identity.hips * h / 2 * width_factor)


def _draw_legs(image, identity, b):
    leg_len = b.feet_y - b.hip_y
    stride = (0.18 if b.view == "side" else 0.06) * leg_len * b.phase
    leg_w = max(b.hw * (1.1 if b.view == "side" else 0.9), 2)
    for side in (-1, 1):
        hip = (b.cx + side * b.hw / 2, b.hip_y)
        foot = (hip[0] - side * stride, b.feet_y)
        if identity.garment == "trousers":
            _limb(image, hip, foot, leg_w, identity.lower)
        else:  # bare legs below shorts (cut at 40%) or under a skirt
            cut = 0.4 if identity.garment == "shorts" else 0.0
            knee = (hip[0] + cut * (foot[0] - hip[0]), hip[1] + cut * leg_len)
            _limb(image, knee, foot, leg_w * 0.8, identity.skin)
            if cut:
                _limb(image, hip, knee, leg_w, identity.lower)
        shoe_axes = (int(leg_w * 0.7) + 1, int(0.02 * b.h) + 1)
        cv2.ellipse(image, (int(foot[0]), int(foot[1] - 0.01 * b.h)), shoe_axes, 0, 0, 360, identity.shoes.tolist(), -1,
                    cv2.LINE_AA)
    if identity.garment == "skirt":
        top, bottom = b.hip_y - 0.02 * b.h, b.hip_y + 0.45 * leg_len
        skirt = np.array([(b.cx - b.hw, top), (b.cx + b.hw, top), (b.cx + 1.5 * b.hw, bottom),
                          (b.cx - 1.5 * b.hw, bottom)], np.int32)
        cv2.fillPoly(image, [skirt], identity.lower.tolist(), cv2.LINE_AA)


def _draw_torso(image, identity, b):
    bottom = b.hip_y + 0.03 * b.h
    torso = np.array([(b.cx - b.sw, b.shoulder_y), (b.cx + b.sw, b.shoulder_y), (b.cx + b.hw, bottom),
                      (b.cx - b.hw, bottom)], np.int32)
    _paint_upper(image, identity, torso, b.shoulder_y, b.h)


def _draw_arms(image, identity, b):
    """Arms swing against the legs; sleeves in the upper colour; a hand bag hangs from the last hand."""
    arm_len, arm_w = 0.36 * b.h, 0.055 * b.h
    sides = (b.facing,) if b.view == "side" else (-1, 1)
    for side in sides:
        shoulder = (b.cx + side * b.sw * (0.3 if b.view == "side" else 0.95), b.shoulder_y + 0.02 * b.h)
        swing = -side * b.phase * (0.25 if b.view == "side" else 0.08) * arm_len
        hand = (shoulder[0] + swing + (0 if b.view == "side" else side * 0.04 * b.h), shoulder[1] + arm_len)
        sleeve = 1.0 if identity.long_sleeves else 0.4
        _limb(image, shoulder, hand, arm_w * 0.8, identity.skin)
        sleeve_end = (shoulder[0] + sleeve * (hand[0] - shoulder[0]), shoulder[1] + sleeve * arm_len)
        _limb(image, shoulder, sleeve_end, arm_w, identity.upper)
        if identity.bag == "hand" and side == sides[-1]:
            _box(image, hand[0] - 0.05 * b.h, hand[1], hand[0] + 0.05 * b.h, hand[1] + 0.09 * b.h, identity.bag_colour)


def _draw_bag_behind(image, identity, b):
    """A backpack seen from the side sticks out behind the back."""
    if identity.bag == "backpack" and b.view == "side":
        x = b.cx - b.facing * (b.sw + 0.05 * b.h)
        _box(image, x - 0.05 * b.h, b.shoulder_y + 0.02 * b.h, x + 0.05 * b.h, b.shoulder_y + 0.22 * b.h,
             identity.bag_colour)


def _draw_bag_over_torso(image, identity, b):
    """Backpack (its body from the back, its straps from the front) and shoulder bag (strap + bag at the hip)."""
    colour = identity.bag_colour
    if identity.bag == "backpack" and b.view == "back":
        _box(image, b.cx - 0.75 * b.sw, b.shoulder_y + 0.03 * b.h, b.cx + 0.75 * b.sw,
             b.shoulder_y + 0.6 * identity.torso * b.h, colour)
    elif identity.bag == "backpack" and b.view == "front":
        for side in (-1, 1):
            _limb(image, (b.cx + side * 0.6 * b.sw, b.shoulder_y), (b.cx + side * 0.5 * b.sw, b.hip_y - 0.05 * b.h),
                  0.025 * b.h, colour)
    elif identity.bag == "shoulder":
        side = -1 if b.view == "back" else 1
        bag_x = b.cx + side * b.hw * 1.1
        _limb(image, (b.cx - side * b.sw * 0.8, b.shoulder_y), (bag_x, b.hip_y), 0.02 * b.h, colour)
        _box(image, bag_x - 0.05 * b.h, b.hip_y - 0.04 * b.h, bag_x + 0.05 * b.h, b.hip_y + 0.06 * b.h, colour)


def _draw_long_hair(image, identity, b):
    head_y = b.feet_y - b.h + b.head_r
    _box(image, b.cx - b.head_r, head_y, b.cx + b.head_r, b.shoulder_y + 0.05 * b.h, identity.hair)


def _draw_head(image, identity, b):
    """Face (or the back of the head), hair on top, optional cap with a brim facing the view."""
    centre = (int(b.cx), int(b.feet_y - b.h + b.head_r))
    radius = max(int(b.head_r), 2)
    cv2.circle(image, centre, radius, (identity.hair if b.view == "back" else identity.skin).tolist(), -1, cv2.LINE_AA)
    cv2.ellipse(image, centre, (radius, radius), 0, 180, 360, identity.hair.tolist(), -1, cv2.LINE_AA)
    if identity.cap:
        cap = identity.cap_colour.tolist()
        cv2.ellipse(image, centre, (radius + 1, radius + 1), 0, 180, 360, cap, -1, cv2.LINE_AA)
        if b.view != "back":
            brim_x = centre[0] + (b.facing * radius if b.view == "side" else 0)
            brim_axes = (radius + 2, max(radius // 4, 1))
            cv2.ellipse(image, (brim_x, centre[1]), brim_axes, 0, 180, 360, cap, -1, cv2.LINE_AA)


def render_person(image, identity, rng, view, person_height, centre_x, feet_y):
    """Draw ``identity`` onto the uint8 RGB ``image`` in place, back to front (viewpoint ``view``)."""
    body = _layout_body(identity, rng, view, person_height, centre_x, feet_y)
    if identity.long_hair and view != "back":
        _draw_long_hair(image, identity, body)  # behind the shoulders
    _draw_bag_behind(image, identity, body)
    _draw_legs(image, identity, body)
    _draw_torso(image, identity, body)
    _draw_bag_over_torso(image, identity, body)
    _draw_arms(image, identity, body)
    if identity.long_hair and view == "back":
        _draw_long_hair(image, identity, body)  # over the back
    _draw_head(image, identity, body)


def _occlude(image, camera, rng):
    """Something between camera and person: a bench/car from below or a pole/passer-by from one side."""
    height, width = image.shape[:2]
    colour = camera.clutter[rng.integers(len(camera.clutter))].tolist()
    if rng.random() < 0.5:
        cv2.rectangle(image, (0, int(height * rng.uniform(0.6, 0.8))), (width, height), colour, -1)
    else:
        band = int(width * rng.uniform(0.15, 0.35))
        x0 = 0 if rng.random() < 0.5 else width - band
        cv2.rectangle(image, (x0, 0), (x0 + band, height), colour, -1)


def apply_camera(image, camera, rng, output_size):
    """Lighting (gamma, colour cast, brightness), blur, downsampling to ``output_size`` and sensor noise.

    Lighting maps each channel value v to ``255 * (v / 255) ** gamma * gain_c * brightness``, applied as a
    256-entry lookup table per channel.
    """
    levels = np.arange(256, dtype=np.float32)[:, None] / 255.0
    lut = 255.0 * np.power(levels, camera.gamma) * camera.gains * (camera.brightness * rng.uniform(0.85, 1.15))
    out = cv2.LUT(image, np.clip(np.round(lut), 0, 255).astype(np.uint8).reshape(1, 256, 3))
    out = cv2.resize(out, (output_size[1], output_size[0]), interpolation=cv2.INTER_AREA)
    if camera.blur > 0.05:
        out = cv2.GaussianBlur(out, (0, 0), camera.blur)
    out = out.astype(np.float32)
    out += camera.noise * rng.standard_normal(out.shape, dtype=np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def render_image(identity, camera, rng, output_size=(128, 64), kind="detected"):
    """One RGB uint8 picture of ``identity`` by ``camera``.

    ``kind``: ``'detected'`` (detector box: loose position/scale), ``'hand'`` (hand-drawn query box: tight),
    ``'junk'`` (a box catching only part of the person), ``'background'`` (no person: a distractor).
    """
    height, width = output_size[0] * RENDER_SCALE, output_size[1] * RENDER_SCALE
    image = render_background(camera, rng, height, width)
    if kind != "background":
        jitter = 0.03 if kind == "hand" else 0.08
        person_height = height * camera.scale * rng.uniform(1 - jitter, 1 + jitter)
        centre_x = width / 2 + rng.normal(0, jitter) * width
        feet_y = height - (height - person_height) / 2 + rng.normal(0, jitter / 2) * height
        if kind == "junk":
            if rng.random() < 0.5:  # person half out of the box, sideways
                centre_x = width * (rng.choice([-0.05, 1.05]))
            else:  # box on the upper body only
                person_height *= rng.uniform(1.8, 2.4)
                feet_y = person_height * rng.uniform(0.9, 1.0)
        view = VIEWS[rng.choice(3, p=camera.view_probs)]
        render_person(image, identity, rng, view, person_height, centre_x, feet_y)
    if kind in ("detected", "hand") and rng.random() < camera.occlusion_prob:
        _occlude(image, camera, rng)
    return apply_camera(image, camera, rng, output_size)


def colour_histograms(images, bins=8):
    """Baseline descriptor to probe learnability: joint RGB histograms of the central body region.

    ``images``: ``[N, H, W, 3]`` uint8 RGB. The region keeps the middle 3/4 of the rows and the middle half
    of the columns (mostly person, little background). Returns ``[N, bins**3]`` float64 square-rooted
    L1-normalised histograms, so squared Euclidean distance is twice the Hellinger distance squared.
    """
    height, width = images.shape[1:3]
    body = images[:, height // 8:height - height // 8, width // 4:width - width // 4] // (256 // bins)
    codes = (body[..., 0].astype(np.int64) * bins + body[..., 1]) * bins + body[..., 2]
    hist = np.stack([np.bincount(c.ravel(), minlength=bins ** 3) for c in codes]).astype(np.float64)
    return np.sqrt(hist / hist.sum(1, keepdims=True))


def _encode_jpeg(image, quality):
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


def _prepare_root(root, overwrite):
    existing = [f for f in SPLIT_FOLDERS if os.path.isdir(os.path.join(root, f)) and os.listdir(os.path.join(root, f))]
    if existing and not overwrite:
        raise ValueError("%s already holds %s; pass overwrite=True (--overwrite) to replace them"
                         % (root, ", ".join(existing)))
    for folder in SPLIT_FOLDERS:
        path = os.path.join(root, folder)
        if os.path.isdir(path):
            shutil.rmtree(path)
        os.makedirs(path)


class _Writer:
    """Names and writes images; frame numbers increase per camera so every name is unique."""

    def __init__(self, root, cameras, rng):
        self.root = root
        self.cameras = cameras
        self.rng = rng
        self.frames = [int(f) for f in rng.integers(0, 1000, len(cameras))]
        self.counts = {folder: 0 for folder in SPLIT_FOLDERS}

    def next_stamp(self, cam):
        self.frames[cam] += int(self.rng.integers(1, 60))
        return int(self.rng.integers(1, 7)), self.frames[cam]

    def encode(self, image, cam):
        return _encode_jpeg(image, self.cameras[cam].jpeg_quality)

    def write(self, folder, pid, cam, stamp, box, jpeg):
        """Write JPEG bytes as ``PPPP_cCsS_FFFFFF_BB.jpg`` (``stamp`` = (sequence, frame))."""
        pid_text = "-1" if pid == market.JUNK_PID else "%04d" % pid
        name = "%s_c%ds%d_%06d_%02d.jpg" % (pid_text, cam + 1, stamp[0], stamp[1], box)
        with open(os.path.join(self.root, folder, name), "wb") as f:
            f.write(jpeg)
        self.counts[folder] += 1


def _check_sizes(num_train_ids, num_test_ids, num_cameras, images_per_id_per_cam, image_size):
    if len(image_size) != 2 or min(image_size) < 16:
        raise ValueError("image_size must be (height, width) with both >= 16, got %r" % (tuple(image_size),))
    if num_train_ids < 1 or num_test_ids < 1:
        raise ValueError("need at least one train and one test identity, got %d and %d" % (num_train_ids, num_test_ids))
    if num_train_ids + num_test_ids > 9999:
        raise ValueError("at most 9999 identities fit the 4-digit Market-1501 names")
    if not 2 <= num_cameras <= 9:
        raise ValueError("num_cameras must be 2-9 (every identity is seen by at least two), got %d" % num_cameras)
    if images_per_id_per_cam < 2:
        raise ValueError("images_per_id_per_cam must be >= 2 (one query plus gallery images), got %d"
                         % images_per_id_per_cam)


def generate(root, num_train_ids=60, num_test_ids=60, num_cameras=6, images_per_id_per_cam=3, seed=0,
             image_size=(128, 64), overwrite=False):
    """Write a synthetic ReID dataset to ``root`` in the Market-1501 layout; returns the counts.

    Each identity is seen by a random subset of 2..``num_cameras`` cameras, ``images_per_id_per_cam``
    images per camera; for test ids the first image per camera is the hand-drawn query. Pids are a random
    permutation of 1..(train + test) split into the two sets (interleaved, as in Market-1501).
    Returns ``{'bounding_box_train': n, 'query': n, 'bounding_box_test': n, 'gt_bbox': n, 'train_ids': n,
    'test_ids': n, 'junk': n, 'distractors': n}``; the parameters and counts also go to ``root/synthetic.json``.
    """
    _check_sizes(num_train_ids, num_test_ids, num_cameras, images_per_id_per_cam, image_size)
    os.makedirs(root, exist_ok=True)
    _prepare_root(root, overwrite)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # the images are tiny: OpenCV's thread pool costs more than it saves
    try:
        counts = _generate_images(root, num_train_ids, num_test_ids, num_cameras, images_per_id_per_cam, seed,
                                  image_size)
    finally:
        cv2.setNumThreads(threads)
    params = dict(num_train_ids=num_train_ids, num_test_ids=num_test_ids, num_cameras=num_cameras,
                  images_per_id_per_cam=images_per_id_per_cam, seed=seed, image_size=list(image_size))
    # written last: its presence means the dataset is complete
    with open(os.path.join(root, META_FILE), "w") as f:
        json.dump({"params": params, "counts": counts}, f, indent=1, sort_keys=True)
    return counts


def _generate_images(root, num_train_ids, num_test_ids, num_cameras, images_per_id_per_cam, seed, image_size):
    # independent random streams per camera, identity and image: appearance does not depend on loop order
    master = np.random.default_rng([seed, 0])
    cameras = [sample_camera(np.random.default_rng([seed, 1, c])) for c in range(num_cameras)]
    pids = master.permutation(num_train_ids + num_test_ids) + 1
    train_pids, test_pids = np.sort(pids[:num_train_ids]), np.sort(pids[num_train_ids:])
    writer = _Writer(root, cameras, master)
    _write_identities(writer, train_pids, False, images_per_id_per_cam, seed, image_size)
    gallery_size = _write_identities(writer, test_pids, True, images_per_id_per_cam, seed, image_size)
    num_junk = int(round(JUNK_FRACTION * gallery_size))
    num_distractors = int(round(DISTRACTOR_FRACTION * gallery_size))
    _write_junk_and_distractors(writer, test_pids, num_junk, num_distractors, seed, image_size)
    return dict(writer.counts, train_ids=num_train_ids, test_ids=num_test_ids, junk=num_junk,
                distractors=num_distractors)


def _write_identities(writer, pids, test, images_per_id_per_cam, seed, image_size):
    """All images of ``pids``, each seen by 2..num_cameras cameras; returns the number of gallery images.

    Train ids go to bounding_box_train; for test ids the first image per camera is the hand-drawn query and
    the others go to bounding_box_test. Every image is also written to gt_bbox with box index 00.
    """
    num_cameras = len(writer.cameras)
    gallery_size = 0
    for pid in pids.tolist():
        identity = sample_identity(np.random.default_rng([seed, 2, pid]))
        num_seen = int(writer.rng.integers(2, num_cameras + 1))
        seen_by = np.sort(writer.rng.choice(num_cameras, size=num_seen, replace=False))
        for cam in seen_by.tolist():
            for k in range(images_per_id_per_cam):
                rng = np.random.default_rng([seed, 3, pid, cam, k])
                is_query = test and k == 0
                jpeg = writer.encode(render_image(identity, writer.cameras[cam], rng, image_size,
                                                  "hand" if is_query else "detected"), cam)
                stamp = writer.next_stamp(cam)
                if is_query:
                    writer.write("query", pid, cam, stamp, 0, jpeg)
                else:
                    folder = "bounding_box_test" if test else "bounding_box_train"
                    writer.write(folder, pid, cam, stamp, int(rng.integers(1, 9)), jpeg)
                    gallery_size += int(test)
                writer.write("gt_bbox", pid, cam, stamp, 0, jpeg)
    return gallery_size


def _write_junk_and_distractors(writer, test_pids, num_junk, num_distractors, seed, image_size):
    """Gallery noise: junk (-1) boxes showing a sliver of a test person; distractors (0000): empty scenes or
    partial strangers."""
    num_cameras = len(writer.cameras)
    for j in range(num_junk):
        rng = np.random.default_rng([seed, 4, j])
        identity = sample_identity(np.random.default_rng([seed, 2, int(rng.choice(test_pids))]))
        cam = int(rng.integers(num_cameras))
        writer.write("bounding_box_test", market.JUNK_PID, cam, writer.next_stamp(cam), int(rng.integers(1, 9)),
                     writer.encode(render_image(identity, writer.cameras[cam], rng, image_size, "junk"), cam))
    for j in range(num_distractors):
        rng = np.random.default_rng([seed, 5, j])
        stranger = sample_identity(rng)
        cam = int(rng.integers(num_cameras))
        kind = "background" if rng.random() < 0.5 else "junk"
        writer.write("bounding_box_test", market.DISTRACTOR_PID, cam, writer.next_stamp(cam), int(rng.integers(1, 9)),
                     writer.encode(render_image(stranger, writer.cameras[cam], rng, image_size, kind), cam))
