"""Export a checkpoint as a Paddle inference model (<prefix>.json + .pdiparams + .reid.json) for trackers.

    python metric_learning/export_model.py --checkpoint output/MobileNetV2/latest --output inference/reid
    python metric_learning/export_model.py --checkpoint ... --input_name crops   # PaddleDetection DeepSORT

Paddle 3.3 writes the PIR program as <prefix>.json; the old __model__ / .pdmodel format can no longer be
written by it (use Paddle <= 2.6 to convert, or consume the model through Paddle Inference >= 3.0).
"""
import os
import sys

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))
if os.path.abspath(sys.path[0] or os.getcwd()) == _PKG_DIR:
    sys.path[0] = os.path.dirname(_PKG_DIR)

import metric_learning  # noqa: E402,F401  (sets CPU thread/MKL defaults before paddle loads)
from metric_learning import checkpoint, export, options  # noqa: E402
from metric_learning.cli import parse_image_shape, run_cli, str2bool  # noqa: E402


def parse_args(argv=None):
    parser = options.new_parser(__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory (e.g. output/<model>/latest)")
    parser.add_argument("--output", default="inference_model/reid", help="output prefix: <output>.json etc.")
    parser.add_argument("--input_name", default="x",
                        help="name of the input tensor: %s" % "; ".join("%s = %s" % kv for kv in export.INPUT_NAMES.items()))
    parser.add_argument("--image_shape", type=parse_image_shape, default=None,
                        help="fixed input C,H,W (default: the shape the checkpoint was trained with)")
    parser.add_argument("--normalize", type=str2bool, default=True, help="L2-normalise the output embedding")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    net = checkpoint.load_model_for_eval(args.checkpoint)
    image_shape = args.image_shape or tuple(checkpoint.read_config(args.checkpoint)["image_shape"])
    config = export.export_inference_model(net, args.output, image_shape, input_name=args.input_name,
                                           normalize=args.normalize,
                                           extra_config={"checkpoint": os.path.abspath(checkpoint.resolve(args.checkpoint))})
    print("exported %s.json / .pdiparams (input %r: [N, %s], output [N, %d]%s); config %s%s"
          % (args.output, config["input_name"], ", ".join(map(str, image_shape)), config["feature_dim"],
             ", L2-normalised" if config["l2_normalized"] else "", args.output, export.CONFIG_SUFFIX))


if __name__ == "__main__":
    run_cli(main)
