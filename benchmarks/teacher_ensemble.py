"""How well do several models rank together? The teacher ensembles of ``train_elem.py --teacher_model a,b``.

    python metric_learning/eval.py --inference_model A.onnx --dataset_root $MARKET --save_features FEATS_A
    python metric_learning/eval.py --inference_model B.onnx --dataset_root $MARKET --save_features FEATS_B
    python benchmarks/teacher_ensemble.py --feature_sets FEATS_A,FEATS_B --weights 1,0 0,1 0.5,0.5 0.75,0.25

Each ``--feature_sets`` entry is a directory that ``eval.py --save_features`` wrote (query and gallery
``.npy`` + ``.txt``). Each ``--weights`` entry is one row of the table: the models' features joined exactly as
``engine.teacher.TeacherEnsemble`` joins a teacher ensemble's (``join_embeddings``: the cosine of two images is
the weighted mean of the models' cosines), then scored on the standard protocol (no re-ranking). A distilled
student copies those cosines, so the row is what its teacher knows.
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from metric_learning.engine.teacher import join_embeddings  # noqa: E402
from metric_learning.evaluation import evaluator  # noqa: E402

SPLITS = ("query", "gallery")


def parse_weights(value):
    try:
        return [float(weight) for weight in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("expected numbers separated by commas, got %r" % value) from None


def load_sets(directories, pattern):
    """``{split: [(feats, pids, camids), ...]}``, one entry per directory; the directories must hold the same
    images in the same order, else joining their rows would join different images."""
    sets = {split: [] for split in SPLITS}
    names = {}
    for directory in directories:
        for split in SPLITS:
            path = os.path.join(directory, split)
            sets[split].append(evaluator.load_feature_set(path + ".npy", path + ".txt", pattern))
            listed = evaluator.read_name_list(path + ".txt")
            if names.setdefault(split, listed) != listed:
                raise ValueError("--feature_sets: %s.txt lists other images than %s/%s.txt"
                                 % (path, directories[0], split))
    return sets


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--feature_sets", required=True,
                        help="directories written by eval.py --save_features, separated by commas")
    parser.add_argument("--weights", type=parse_weights, nargs="+", required=True,
                        help="one weighting per table row: one weight per feature set, separated by commas")
    parser.add_argument("--name_pattern", default="market1501", help="how identities and cameras are read from names")
    args = parser.parse_args(argv)
    directories = args.feature_sets.split(",")
    for weights in args.weights:
        if len(weights) != len(directories):
            parser.error("--weights %s has %d values for %d --feature_sets"
                         % (",".join("%g" % w for w in weights), len(weights), len(directories)))
    sets = load_sets(directories, args.name_pattern)
    (_, q_pids, q_camids), (_, g_pids, g_camids) = sets["query"][0], sets["gallery"][0]
    print("| weights (%s) | Rank-1 | Rank-5 | mAP | mINP |" % ", ".join(os.path.basename(d.rstrip("/"))
                                                              for d in directories))
    print("|---|---|---|---|---|")
    for weights in args.weights:
        query, gallery = (join_embeddings([feats for feats, _, _ in sets[split]], weights) for split in SPLITS)
        result = evaluator.evaluate_features(query, gallery, q_pids, g_pids, q_camids, g_camids)
        print("| %s | %.2f | %.2f | %.2f | %.2f |" % (", ".join("%g" % w for w in weights), 100 * result["rank1"],
                                                     100 * result["rank5"], 100 * result["mAP"],
                                                     100 * result["mINP"]))


if __name__ == "__main__":
    main()
