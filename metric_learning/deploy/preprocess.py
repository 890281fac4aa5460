"""The one way a crop becomes a network input: cut from the frame, then resized and normalised by the
transforms training and evaluation use (:class:`metric_learning.data.transforms.Resize`, ``Normalize``).

:class:`Preprocessor` turns BGR uint8 crops of any size into the NCHW float32 batch an exported model's
``<prefix>.reid.json`` describes (or, :meth:`Preprocessor.for_network`, the batch a network in training takes:
RGB, x / 255, ImageNet mean / std).
Crops are cut either fitted to the model's aspect ratio, as DeepSORT does (:func:`fit_boxes_to_aspect`, used by
:class:`metric_learning.deploy.extractor.Extractor`), or exactly as the box lies (:func:`box_crops`, used by the
tracking benchmark's box embedders). :func:`image_file_transform` gives an exported model's input to whole image
files embedded by the evaluation pipeline (eval.py --inference_model).
"""
import numpy as np

from metric_learning.data import transforms

BOX_FORMATS = {"ltwh": "left, top, width, height (DeepSORT)", "ltrb": "left, top, right, bottom (x1, y1, x2, y2)"}


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


def check_image(image, what):
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
        self.normalize = transforms.Normalize(config["mean"], config["std"], config["pixel_scale"])

    @classmethod
    def for_network(cls, image_shape):
        """The preprocessing of a network as trained (:data:`metric_learning.data.transforms.NETWORK_INPUT`)."""
        return cls(dict(transforms.NETWORK_INPUT, input_shape=list(image_shape)), "the network input")

    def __call__(self, crops):
        resized = resize_crops(crops, self.height, self.width)
        if self.reverse_channels:
            resized = resized[..., ::-1]
        return self.normalize.batch(resized)


def image_file_transform(config):
    """The transform of :mod:`metric_learning.data.transforms` (an RGB image file as decoded -> CHW float32) that
    resizes and normalises as an exported model's ``.reid.json`` ``config`` says, for embedding image files
    through :func:`metric_learning.evaluation.evaluator.extract_features` (eval.py --inference_model)."""
    transform = transforms.build_transforms(config["input_shape"], train=False)
    transform.normalize = transforms.Normalize(config["mean"], config["std"], config["pixel_scale"])
    return transform


def resize_crops(crops_bgr, height, width):
    """``[N, height, width, 3]`` uint8: the crops resized as training and evaluation resize."""
    resize = transforms.Resize((height, width))
    return np.stack([resize(crop) for crop in crops_bgr])


def box_crops(frame_bgr, boxes_ltwh):
    """The pixels of each box (left, top, width, height), its edges rounded outwards and clipped to the frame."""
    height, width = frame_bgr.shape[:2]
    boxes = np.asarray(boxes_ltwh, np.float64).reshape(-1, 4)
    left_top = np.clip(np.floor(boxes[:, :2]), 0, [width, height]).astype(np.int64)
    right_bottom = np.clip(np.ceil(boxes[:, :2] + boxes[:, 2:]), 0, [width, height]).astype(np.int64)
    crops = []
    for i, ((left, top), (right, bottom)) in enumerate(zip(left_top.tolist(), right_bottom.tolist())):
        if right <= left or bottom <= top:
            raise ValueError("box %d %s lies outside the %dx%d frame" % (i, boxes[i].tolist(), width, height))
        crops.append(frame_bgr[top:bottom, left:right])
    return crops
