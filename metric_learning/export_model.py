"""Export a checkpoint as a Paddle inference model (<prefix>.json + .pdiparams + .reid.json) for trackers.

    python metric_learning/export_model.py --checkpoint output/MobileNetV2/latest --output inference_model/reid
    python metric_learning/export_model.py --checkpoint ... --input_name crops   # PaddleDetection DeepSORT
    python metric_learning/export_model.py --checkpoint ... --onnx True         # also <prefix>.onnx (paddle2onnx)
    python metric_learning/export_model.py --checkpoint ... --flip True         # mean with the mirror, in the graph
    python metric_learning/export_model.py --checkpoint ... --onnx True --int8_calibration <market root>/bounding_box_train
                                                                               # and <prefix>_int8.onnx
    python metric_learning/export_model.py --checkpoint ... --onnx True --fp16_check <market root>/bounding_box_train
                                                                               # and <prefix>_fp16.onnx

Paddle 3.3 writes the PIR program as <prefix>.json; the old __model__ / .pdmodel format can no longer be
written by it (use Paddle <= 2.6 to convert, or consume the model through Paddle Inference >= 3.0, or ONNX).
With --onnx True the ONNX model is checked against Paddle Inference on a random batch and the largest
difference printed. See export/README.md for consumers (metric_learning.deploy.extractor, DeepSORT trackers).
"""
if not __package__:  # run by its path: the repository root goes first on sys.path (see run_by_path.py)
    import run_by_path  # noqa: F401
import os

from metric_learning.config import options, schema
from metric_learning.config.flags import checkpoint_path, in_repo, parse_image_shape, str2bool
from metric_learning.deploy import artifact, export, quantize
from metric_learning.errors import run_cli
from metric_learning.models import checkpoint

PARITY_BATCH = 8


def parse_args(argv=None):
    parser = options.new_parser(__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, type=checkpoint_path,
                        help="checkpoint directory (e.g. output/<model>/latest)")
    parser.add_argument("--output", default=in_repo("inference_model", "reid"),
                        help="output prefix: <output>.json etc.")
    parser.add_argument("--input_name", default="x",
                        help="name of the input tensor: %s" % "; ".join("%s = %s" % kv for kv in export.INPUT_NAMES.items()))
    parser.add_argument("--image_shape", type=parse_image_shape, default=None,
                        help="fixed input C,H,W (default: the shape the checkpoint was trained with)")
    parser.add_argument("--normalize", type=str2bool, default=True, help="L2-normalise the output embedding")
    parser.add_argument("--flip", type=str2bool, default=False,
                        help="build flip at test time into the graph: the embedding is the mean of the image's and "
                             "its mirror's, then L2-normalised (as eval.py --flip True); recorded in the .reid.json")
    parser.add_argument("--onnx", type=str2bool, default=False,
                        help="also write <output>.onnx with paddle2onnx and check it with ONNX Runtime")
    parser.add_argument("--onnx_opset", type=int, default=export.ONNX_OPSET,
                        help="ONNX opset to target (paddle2onnx raises it when an operator needs a newer one)")
    parser.add_argument("--int8_calibration", default=None,
                        help="with --onnx True, also write <output>_int8.onnx, quantised to int8 by ONNX Runtime and "
                             "calibrated on images of this folder (e.g. Market-1501's bounding_box_train); its cosine "
                             "to the fp32 embeddings on other images of the folder is printed and recorded")
    parser.add_argument("--int8_images", type=int, default=quantize.DEFAULT_CALIBRATION_IMAGES,
                        help="calibration images for --int8_calibration (as many again are drawn for the check)")
    parser.add_argument("--fp16_check", default=None,
                        help="with --onnx True, also write <output>_fp16.onnx (fp16 weights and activations, float32 "
                             "input and output); its cosine to the fp32 embeddings on %d images of this folder is "
                             "printed and recorded" % quantize.DEFAULT_CHECK_IMAGES)
    args = parser.parse_args(argv)
    # each reduced-precision version is made from the ONNX model and checked on a folder of images
    for flag, folder, verb in (("--fp16_check", args.fp16_check, "converts"),
                               ("--int8_calibration", args.int8_calibration, "quantises")):
        if folder and not args.onnx:
            parser.error("%s %s the ONNX model: add --onnx True" % (flag, verb))
        if folder and not os.path.isdir(folder):
            parser.error("%s %s is not a folder of images" % (flag, folder))
    if args.int8_calibration and args.int8_images < 1:
        parser.error("--int8_images must be positive, got %d" % args.int8_images)
    return args


def main(argv=None):
    args = parse_args(argv)
    net = checkpoint.load_model_for_eval(args.checkpoint)
    image_shape = args.image_shape or schema.image_shape(checkpoint.read_config(args.checkpoint))
    config = export.export_inference_model(net, args.output, image_shape, input_name=args.input_name,
                                           normalize=args.normalize, flip=args.flip,
                                           extra_config={"checkpoint": os.path.abspath(checkpoint.resolve(args.checkpoint))})
    print("exported %s.json / .pdiparams (input %r: [N, %s], output [N, %d]%s%s); config %s%s"
          % (args.output, config["input_name"], ", ".join(map(str, image_shape)), config["feature_dim"],
             ", mean with the mirror image" if config["flip"] else "",
             ", L2-normalised" if config["l2_normalized"] else "", args.output, artifact.CONFIG_SUFFIX))
    if args.onnx:
        onnx_path = export.export_onnx(args.output, args.onnx_opset)
        print("exported %s; ONNX Runtime vs Paddle Inference on a random batch of %d: max |diff| %.2e"
              % (onnx_path, PARITY_BATCH, export.onnx_parity(args.output, PARITY_BATCH)))
    if args.int8_calibration:
        int8_path, check = quantize.quantize_int8(args.output, args.int8_calibration, args.int8_images,
                                                  args.int8_images)
        print("exported %s (int8, calibrated on %d images of %s); cosine to fp32 on %d other images: mean %.4f, "
              "min %.4f" % (int8_path, args.int8_images, args.int8_calibration, check["images"],
                            check["mean_cosine"], check["min_cosine"]))
    if args.fp16_check:
        fp16_path, check = quantize.convert_fp16(args.output, args.fp16_check)
        print("exported %s (fp16, float32 input and output); cosine to fp32 on %d images of %s: mean %.4f, min %.4f"
              % (fp16_path, check["images"], args.fp16_check, check["mean_cosine"], check["min_cosine"]))


def console():
    """The ``reid-export`` command."""
    run_cli(main)


if __name__ == "__main__":
    console()
