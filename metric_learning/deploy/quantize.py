"""Reduced-precision versions of an ONNX export: int8 (ONNX Runtime's static post-training quantisation,
calibrated on real crops) and fp16 (weights and activations in half precision, float32 input and output).

Static quantisation (QDQ format: int8 per-channel weights, uint8 activations whose ranges come from
calibration images) rather than dynamic: ONNX Runtime's dynamic quantisation covers MatMul and Gemm only,
and would leave the convolutions, which are nearly all of a CNN's time, in fp32. uint8 activations with
int8 weights is the combination ONNX Runtime's x86 kernels (VNNI) are built for.

fp16 is ONNX Runtime's own converter (``onnxruntime.transformers.float16``, in the onnxruntime wheel), with
float32 kept at the input and output so that a consumer feeds and reads the same arrays as from the fp32 model.
Whether it is faster depends on the CPU: where ONNX Runtime has no fp16 kernel for an operator it runs it in
float32 between inserted casts.

An embedding can come out of int8 badly damaged while the network still "runs", so every reduced model is
checked on crops it was not calibrated on: the cosine between each crop's reduced and fp32 embeddings, recorded
in its ``.reid.json`` (``int8_check`` / ``fp16_check``) and printed. Only a Market-1501 evaluation says whether
the ranking held; the cosine says how far the embedding moved.
"""
import os
import tempfile

import numpy as np

from metric_learning.data import images, market
from metric_learning.data.datasets import ImageDataset
from metric_learning.deploy import artifact
from metric_learning.deploy.embedders import OnnxEmbedder
from metric_learning.deploy.preprocess import image_file_transform
from metric_learning.evaluation import metrics

INT8_SUFFIX = "_int8"
FP16_SUFFIX = "_fp16"
DEFAULT_CALIBRATION_IMAGES = 256
DEFAULT_CHECK_IMAGES = 256
CALIBRATION_BATCH = 32
CALIBRATION_SEED = 0
# per-channel weight scales need DequantizeLinear's axis attribute, which came with opset 13
PER_CHANNEL_OPSET = 13


def int8_prefix(prefix):
    """The prefix of the int8 model quantised from the ONNX export at ``prefix``: ``<prefix>_int8``."""
    return prefix + INT8_SUFFIX


def fp16_prefix(prefix):
    """The prefix of the fp16 model converted from the ONNX export at ``prefix``: ``<prefix>_fp16``."""
    return prefix + FP16_SUFFIX


def split_images(image_dir, calibration_images, check_images, flag="--int8_calibration"):
    """``(calibration paths, check paths)``: disjoint random draws from the images of ``image_dir`` (seeded, so a
    rerun quantises alike), so that the check measures crops the quantiser never saw. ``flag`` names the folder
    in the error."""
    names = market.list_images(image_dir)
    wanted = calibration_images + check_images
    if len(names) < wanted:
        uses = (["%d to calibrate" % calibration_images] if calibration_images else []) + ["%d to check" % check_images]
        raise ValueError("%s %s holds %d images; %d are needed (%s)"
                         % (flag, image_dir, len(names), wanted, ", ".join(uses)))
    picked = np.random.default_rng(CALIBRATION_SEED).permutation(len(names))[:wanted]
    paths = [os.path.join(image_dir, names[i]) for i in picked]
    images.check_images(paths)
    return paths[:calibration_images], paths[calibration_images:]


def load_batches(paths, config, batch_size=CALIBRATION_BATCH):
    """NCHW float32 batches of the image files ``paths``, preprocessed as the export's ``config`` says."""
    dataset = ImageDataset(paths, np.zeros(len(paths), np.int64), image_file_transform(config))
    for start in range(0, len(paths), batch_size):
        yield np.stack([dataset[i][0] for i in range(start, min(start + batch_size, len(paths)))])


def _raise_opset(path, opset):
    """Convert the ONNX model at ``path`` to at least ``opset`` in place (export_model.py writes opset 11)."""
    import onnx
    from onnx import version_converter

    model = onnx.load(path)
    current = max(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))
    if current < opset:
        onnx.save(version_converter.convert_version(model, opset), path)


class _CalibrationReader:
    """ONNX Runtime's calibration data reader protocol: ``get_next()`` gives one input feed, then None."""

    def __init__(self, input_name, batches):
        self.feeds = iter({input_name: batch} for batch in batches)

    def get_next(self):
        return next(self.feeds, None)


def quantize_int8(prefix, image_dir, calibration_images=DEFAULT_CALIBRATION_IMAGES,
                  check_images=DEFAULT_CHECK_IMAGES, threads=None):
    """Quantise ``<prefix>.onnx`` to ``<prefix>_int8.onnx`` (+ its ``.reid.json``), calibrated on images of
    ``image_dir``; return the check ``{"images", "mean_cosine", "min_cosine"}`` against the fp32 model."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    onnx_path, config_path = artifact.resolve_onnx(prefix)
    config = artifact.read_config_file(config_path)
    calibration, check = split_images(image_dir, calibration_images, check_images)
    out_prefix = int8_prefix(onnx_path[: -len(".onnx")])
    with tempfile.TemporaryDirectory() as scratch:
        # shape inference and graph fusions first, as ONNX Runtime's quantisation guide asks: the quantiser then
        # sees Conv+BN already fused and places one quantise/dequantise pair per fused operator
        prepared = os.path.join(scratch, "prepared.onnx")
        quant_pre_process(onnx_path, prepared, skip_symbolic_shape=True)
        _raise_opset(prepared, PER_CHANNEL_OPSET)
        quantize_static(prepared, out_prefix + ".onnx",
                        _CalibrationReader(config["input_name"], load_batches(calibration, config)),
                        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    artifact.save_config(out_prefix, dict(_onnx_only(config), precision="int8", int8_calibration={
        "image_dir": os.path.abspath(image_dir), "images": len(calibration), "seed": CALIBRATION_SEED}))
    return out_prefix + ".onnx", _check_against_fp32(onnx_path, out_prefix, check, config, "int8", threads)


def convert_fp16(prefix, image_dir, check_images=DEFAULT_CHECK_IMAGES, threads=None):
    """Convert ``<prefix>.onnx`` to ``<prefix>_fp16.onnx`` (+ its ``.reid.json``), float32 at the input and
    output; return its check ``{"images", "mean_cosine", "min_cosine"}`` against the fp32 model on images of
    ``image_dir``."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx_path, config_path = artifact.resolve_onnx(prefix)
    config = artifact.read_config_file(config_path)
    _, check = split_images(image_dir, 0, check_images, flag="--fp16_check")
    out_prefix = fp16_prefix(onnx_path[: -len(".onnx")])
    onnx.save(convert_float_to_float16(onnx.load(onnx_path), keep_io_types=True), out_prefix + ".onnx")
    artifact.save_config(out_prefix, dict(_onnx_only(config), precision="fp16"))
    return out_prefix + ".onnx", _check_against_fp32(onnx_path, out_prefix, check, config, "fp16", threads)


def _onnx_only(config):
    # a reduced model is an ONNX file only: the fp32 config without the Paddle files, which it has none of
    return {key: value for key, value in config.items() if key not in ("model_file", "params_file")}


def _check_against_fp32(onnx_path, out_prefix, check_paths, config, precision, threads):
    """The cosine of the reduced model's embeddings to the fp32 model's on ``check_paths``, recorded in the
    reduced model's ``.reid.json`` as ``<precision>_check`` and returned."""
    fp32, reduced = OnnxEmbedder(onnx_path, threads=threads), OnnxEmbedder(out_prefix + ".onnx", threads=threads)
    cosines = np.concatenate([
        np.sum(metrics.l2_normalize(fp32(batch)) * metrics.l2_normalize(reduced(batch)), axis=1)
        for batch in load_batches(check_paths, config)])
    result = {"images": len(check_paths), "mean_cosine": float(cosines.mean()), "min_cosine": float(cosines.min())}
    artifact.save_config(out_prefix, dict(reduced.config, **{precision + "_check": result}))
    return result
