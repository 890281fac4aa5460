"""Convert a ShuffleNetV2 0.5x backbone in Megvii's layout (.pth) into a paddle-reid checkpoint directory.

    python pretrained_model/convert_shufflenetv2.py ../shared/weights/shufflenetv2_x0_5_backbone_imagenet_fastestdet.pth \
        pretrained_model/shufflenetv2_x0_5_imagenet
    python metric_learning/train_elem.py --model ShuffleNetV2_x0_5 --pretrained_model pretrained_model/shufflenetv2_x0_5_imagenet ...

Needs no PyTorch. The network is PaddleClas's ShuffleNetV2_x0_5, its channels reordered to
compute what Megvii's layout computes (see pretrained_model/README.md). Every tensor loaded or
skipped is reported. The result is accepted by --pretrained_model, eval.py and export_model.py
--checkpoint (as the ImageNet network: the pooled 192-channel map is the embedding).
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
from metric_learning.models.torch_weights import convert_megvii_shufflenetv2  # noqa: E402


def main(argv=None):
    parser = add_conversion_arguments(
        argparse.ArgumentParser(description=__doc__.splitlines()[0]),
        "Megvii-layout .pth (e.g. shufflenetv2_x0_5_backbone_imagenet_fastestdet.pth)",
        "checkpoint directory to write (e.g. pretrained_model/shufflenetv2_x0_5_imagenet)",
        "input C,H,W recorded in config.json (default %(default)s, the ReID size)")
    args = parser.parse_args(argv)
    check_conversion_paths(parser, args)
    convert_megvii_shufflenetv2(args.src, args.dst, image_shape=args.image_shape)


if __name__ == "__main__":
    run_cli(main)
