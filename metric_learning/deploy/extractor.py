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
import numpy as np

from metric_learning.deploy import embedders
from metric_learning.deploy.preprocess import BOX_FORMATS, Preprocessor, check_image, fit_boxes_to_aspect
from metric_learning.evaluation import metrics

DEGENERATE_POLICIES = ("raise", "skip")


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
        self.model = embedders.load_embedder(path, backend, use_gpu=use_gpu, threads=threads, mkldnn=mkldnn)
        self.backend = "onnxruntime" if isinstance(self.model, embedders.OnnxEmbedder) else "paddle"
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
        check_image(frame_bgr, "frame")
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
            check_image(crop, "crop %d" % index)
        if not crops:
            return np.zeros((0, self.feature_dim), np.float32)
        feats = np.concatenate([self.model(self.preprocess(crops[start:start + self.batch_size]))
                                for start in range(0, len(crops), self.batch_size)]).astype(np.float32, copy=False)
        return metrics.l2_normalize(feats) if self.normalize else feats
