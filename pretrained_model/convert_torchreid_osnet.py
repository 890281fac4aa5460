"""Convert a torchreid OSNet checkpoint (.pth) into a paddle-reid checkpoint directory.

    python pretrained_model/convert_torchreid_osnet.py osnet_x0_25_market1501.pth pretrained_model/osnet_x0_25_market1501
    python metric_learning/eval.py --checkpoint pretrained_model/osnet_x0_25_market1501 --dataset_root <market root>

Needs no PyTorch. Accepts a bare state dict, {'state_dict': ...} and 'module.'-prefixed
keys; the OSNet width is read from the file (or --model). Every tensor loaded or skipped
is reported. The result is accepted by eval.py / export_model.py --checkpoint and by
--pretrained_model (the classifier is kept when its class count fits the training set).
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import metric_learning  # noqa: E402,F401  (sets CPU defaults before paddle loads)
from metric_learning.config.flags import add_conversion_arguments, check_conversion_paths  # noqa: E402
from metric_learning.errors import run_cli  # noqa: E402
from metric_learning.models.osnet import OSNET_WIDTHS  # noqa: E402
from metric_learning.models.torch_weights import convert_torchreid_osnet  # noqa: E402


def main(argv=None):
    parser = add_conversion_arguments(
        argparse.ArgumentParser(description=__doc__.splitlines()[0]),
        "torchreid .pth / .pth.tar (e.g. osnet_x0_25_market1501.pth)",
        "checkpoint directory to write (e.g. pretrained_model/osnet_x0_25_market1501)",
        "input C,H,W recorded in config.json (torchreid's models are trained at 3,256,128)")
    parser.add_argument("--model", choices=sorted(OSNET_WIDTHS), default=None,
                        help="OSNet width (default: read from the file)")
    args = parser.parse_args(argv)
    check_conversion_paths(parser, args)
    convert_torchreid_osnet(args.src, args.dst, model_name=args.model, image_shape=args.image_shape)


if __name__ == "__main__":
    run_cli(main)
