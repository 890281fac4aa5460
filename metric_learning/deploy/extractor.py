"""Appearance embeddings of detections for a tracker, from an exported model (export_model.py).

    extractor = Extractor("inference_model/reid")        # <prefix>.json + .pdiparams + .reid.json: Paddle Inference
    extractor = Extractor("inference_model/reid.onnx")   # <prefix>.onnx + .reid.json: ONNX Runtime
    feats = extractor(frame_bgr, boxes)                  # boxes [N, 4] left, top, width, height -> float32 [N, D]
    feats = extractor.embed_crops([crop_bgr, ...])       # crops already cut out, any size -> float32 [N, D]

Rows are L2-normalised (``normalize=False`` returns the model's raw output). Images are OpenCV BGR uint8;
everything else (input H x W, channel order, scale, mean / std) comes from ``<prefix>.reid.json``. Crops run
through the model ``batch_size`` at a time.

Cropping, as DeepSORT's ``extract_image_patch`` does (see :func:`fit_boxes_to_aspect`): a box keeps its height
and vertical position and its width becomes ``height * W / H``, the model input's aspect ratio, around the box's
horizontal centre, so that the resize to H x W does not squash the person. The rectangle's edges are rounded
to the nearest pixel and clipped to the frame, and the pixels inside are resized with ``cv2.resize``
(bilinear, as training and evaluation resize). Unlike DeepSORT, edges are rounded rather than truncated
toward zero, and the clip keeps the frame's last row and column.

Degenerate boxes are those with zero or negative width or height, a non-finite coordinate, or whose fitted
rectangle covers no pixel of the frame (it lies entirely outside, or rounds to nothing). By default a call raises ValueError naming the first such box's
index and values. With ``on_degenerate="skip"`` it returns ``(embeddings, mask)`` instead: ``mask`` is a
bool array [N], True where box i was embedded, and ``embeddings`` has one row per True entry, in box order,
so ``embeddings[k]`` belongs to ``boxes[np.flatnonzero(mask)[k]]``.
"""
import cv2
import numpy as np

from metric_learning.deploy import export
from metric_learning.data import images
from metric_learning.evaluation import metrics

BOX_FORMATS = {"ltwh": "left, top, width, height (DeepSORT)", "ltrb": "left, top, right, bottom (x1, y1, x2, y2)"}
DEGENERATE_POLICIES = ("raise", "skip")


def fit_boxes_to_aspect(boxes, aspect, frame_shape, box_format="ltwh"):
    """Pixel rectangles to crop for ``boxes`` and which of them are usable.

    ``boxes``: [N, 4] in ``box_format`` (see ``BOX_FORMATS``); ``aspect``: the model input's width / height;
    ``frame_shape``: (height, width, ...) of the frame. Each box keeps its top, bottom and horizontal centre;
    its width becomes ``height * aspect``. Edges are rounded to the nearest integer (halves up) and clipped to
    the frame. Returns ``(rects, valid)``: int64 [N, 4] ``x1, y1, x2, y2`` with x2 / y2 exclusive (so the crop is
    ``frame[y1:y2, x1:x2]``), and bool [N], False for a degenerate box (its rect is all zeros).
    """
    if box_format not in BOX_FORMATS:
        raise ValueError("box_format must be one of %s, got %r" % (", ".join(BOX_FORMATS), box_format))
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    frame_height, frame_width = frame_shape[:2]
    # NaN / inf coordinates make invalid arithmetic and compare False: such boxes are reported, not warned about
    with np.errstate(invalid="ignore"):
        left, top = boxes[:, 0], boxes[:, 1]
        if box_format == "ltwh":
            width, height = boxes[:, 2], boxes[:, 3]
        else:
            width, height = boxes[:, 2] - left, boxes[:, 3] - top
        fitted_width = height * aspect
        x1 = left + (width - fitted_width) / 2.0
        edges = np.stack([x1, top, x1 + fitted_width, top + height], axis=1)
        rects = np.clip(np.floor(edges + 0.5), 0, [frame_width, frame_height, frame_width, frame_height])
        valid = (np.isfinite(boxes).all(axis=1) & (width > 0) & (height > 0)
                 & (rects[:, 2] > rects[:, 0]) & (rects[:, 3] > rects[:, 1]))
    return np.where(valid[:, None], rects, 0).astype(np.int64), valid


def _check_image(image, what):
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 \
            or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError("%s: expected a non-empty HxWx3 uint8 BGR image, got %s %s"
                         % (what, getattr(image, "shape", None), getattr(image, "dtype", type(image).__name__)))


class Preprocessor:
    """BGR uint8 crops of any size -> the model's NCHW float32 batch, as ``<prefix>.reid.json`` describes."""

    def __init__(self, config, source):
        channels, self.height, self.width = (int(v) for v in config["input_shape"])
        if channels != 3 or config.get("layout", "NCHW") != "NCHW":
            raise ValueError("%s: expected a 3-channel NCHW input, got input_shape %s, layout %s"
                             % (source, config["input_shape"], config.get("layout")))
        if config["channel_order"] not in ("RGB", "BGR"):
            raise ValueError("%s: channel_order must be RGB or BGR, got %r" % (source, config["channel_order"]))
        self.reverse_channels = config["channel_order"] == "RGB"  # crops arrive in OpenCV's BGR order
        std = np.asarray(config["std"], dtype=np.float64).reshape(1, 3, 1, 1)
        mean = np.asarray(config["mean"], dtype=np.float64).reshape(1, 3, 1, 1)
        # (x * pixel_scale - mean) / std, folded into one multiply and one subtract
        self.scale = (float(config["pixel_scale"]) / std).astype(np.float32)
        self.offset = (mean / std).astype(np.float32)

    def __call__(self, crops):
        resized = np.stack([cv2.resize(crop, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
                            for crop in crops])
        if self.reverse_channels:
            resized = resized[..., ::-1]
        batch = np.ascontiguousarray(resized.transpose(0, 3, 1, 2), dtype=np.float32)
        batch *= self.scale
        batch -= self.offset
        return batch


class Extractor:
    """Embeds detections (``extractor(frame, boxes)``) or crops (``embed_crops``) with an exported model.

    ``path``: a Paddle export (``<prefix>``, ``<prefix>.json`` or its directory) or ``<prefix>.onnx``.
    ``backend``: ``auto`` (ONNX Runtime for a ``.onnx`` path, Paddle Inference otherwise), ``paddle`` or
    ``onnxruntime`` (which takes ``<prefix>.onnx`` beside the Paddle files). ``threads``: CPU threads (default
    $OMP_NUM_THREADS). ``use_gpu``: Paddle's GPU build / onnxruntime-gpu when present, else CPU.
    ``mkldnn``: oneDNN kernels for Paddle Inference on CPU.
    """

    def __init__(self, path, backend="auto", batch_size=32, threads=None, use_gpu=False, mkldnn=True,
                 normalize=True):
        if int(batch_size) < 1:
            raise ValueError("batch_size must be positive, got %r" % batch_size)
        self.model = export.load_embedder(path, backend, use_gpu=use_gpu, threads=threads, mkldnn=mkldnn)
        self.backend = "onnxruntime" if isinstance(self.model, export.OnnxEmbedder) else "paddle"
        self.config = self.model.config
        self.preprocess = Preprocessor(self.config, self.model.model_path)
        self.batch_size = int(batch_size)
        self.normalize = normalize

    @property
    def input_shape(self):
        """(C, H, W) of the model input."""
        return self.model.input_shape

    @property
    def feature_dim(self):
        return int(self.config["feature_dim"])

    def __call__(self, frame_bgr, boxes, box_format="ltwh", on_degenerate="raise"):
        """float32 [N, D] embeddings of ``boxes`` in ``frame_bgr`` (see the module docstring for cropping and
        ``on_degenerate``)."""
        if on_degenerate not in DEGENERATE_POLICIES:
            raise ValueError("on_degenerate must be one of %s, got %r" % (", ".join(DEGENERATE_POLICIES),
                                                                            on_degenerate))
        _check_image(frame_bgr, "frame")
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError("boxes must be [N, 4] (%s), got shape %s" % (BOX_FORMATS.get(box_format, box_format),
                                                                          list(boxes.shape)))
        _, height, width = self.input_shape
        rects, valid = fit_boxes_to_aspect(boxes, width / height, frame_bgr.shape, box_format)
        if on_degenerate == "raise" and not valid.all():
            index = int(np.flatnonzero(~valid)[0])
            raise ValueError(self._degenerate_message(index, boxes[index], box_format, frame_bgr.shape))
        feats = self.embed_crops([frame_bgr[y1:y2, x1:x2] for x1, y1, x2, y2 in rects[valid]])
        return (feats, valid) if on_degenerate == "skip" else feats

    @staticmethod
    def _degenerate_message(index, box, box_format, frame_shape):
        width, height = (box[2], box[3]) if box_format == "ltwh" else (box[2] - box[0], box[3] - box[1])
        values = "%s [%s]" % (box_format, ", ".join("%g" % v for v in box))
        if not np.isfinite(box).all():
            reason = "has a non-finite coordinate"
        elif width <= 0 or height <= 0:
            reason = "has zero or negative width or height"
        else:
            reason = ("covers no pixel of the %dx%d (WxH) frame once fitted to the model's aspect ratio and clipped"
                      % (frame_shape[1], frame_shape[0]))
        return "box %d (%s) %s; pass on_degenerate='skip' to leave such boxes out" % (index, values, reason)

    def embed_crops(self, crops_bgr):
        """float32 [N, D] embeddings of HxWx3 uint8 BGR crops (resized to the model input as they are)."""
        crops = list(crops_bgr)
        for index, crop in enumerate(crops):
            _check_image(crop, "crop %d" % index)
        if not crops:
            return np.zeros((0, self.feature_dim), np.float32)
        feats = np.concatenate([self.model(self.preprocess(crops[start:start + self.batch_size]))
                                for start in range(0, len(crops), self.batch_size)]).astype(np.float32, copy=False)
        return metrics.l2_normalize(feats) if self.normalize else feats

    def embed_files(self, paths, flip=False):
        """float32 [N, D] embeddings of image files (whole images, as crops); ``flip`` averages each with its
        mirror's. An unreadable file raises :class:`metric_learning.data.images.BadImageError` naming it;
        every file is checked before the first is embedded, so a bad one fails fast with all the others."""
        images.check_images(paths)
        feats = []
        for start in range(0, len(paths), self.batch_size):
            crops = [images.read_image_bgr(p) for p in paths[start:start + self.batch_size]]
            chunk = self.embed_crops(crops)
            if flip:
                chunk = (chunk + self.embed_crops([cv2.flip(crop, 1) for crop in crops])) / 2.0
                chunk = metrics.l2_normalize(chunk) if self.normalize else chunk
            feats.append(chunk)
        return np.concatenate(feats) if feats else np.zeros((0, self.feature_dim), np.float32)
