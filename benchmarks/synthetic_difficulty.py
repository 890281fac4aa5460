"""How hard is the synthetic ReID dataset? Generation cost and cross-camera retrieval of simple baselines.

    python benchmarks/synthetic_difficulty.py                 # default demo set (seed 0), probe CNN 10 epochs
    python benchmarks/synthetic_difficulty.py --epochs 0      # baselines only (a few seconds)
    python benchmarks/synthetic_difficulty.py --root data/synthetic

Rows: raw pixels (Euclidean), RGB histograms of the body region (:func:`synthetic.colour_histograms`),
the same histograms projected by an LDA fitted on the training ids (a linear metric learned from the train
split), and a small probe CNN (4 stride-2 blocks of two 3x3 convs, 32-256 channels, global average pool,
BN) from random initialisation, untrained and after softmax training with flip/pad/erasing. The probe is
not the project's model; it only shows that the data rewards learning. Metrics: Market-1501 protocol
(same-id same-camera gallery images and junk ignored) via :mod:`metric_learning.evaluation.metrics`.
"""
import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import metric_learning  # noqa: E402,F401  (CPU defaults before paddle loads)
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from metric_learning.data import market, synthetic, transforms  # noqa: E402
from metric_learning.evaluation import metrics  # noqa: E402


def load_rgb(samples):
    return np.stack([cv2.cvtColor(cv2.imread(s.path), cv2.COLOR_BGR2RGB) for s in samples])


def ids(samples):
    return np.array([s.pid for s in samples]), np.array([s.camid for s in samples])


def build_probe(num_classes):
    import paddle.nn as nn

    def block(cin, cout):
        return [nn.Conv2D(cin, cout, 3, stride=2, padding=1, bias_attr=False), nn.BatchNorm2D(cout), nn.ReLU(),
                nn.Conv2D(cout, cout, 3, padding=1, bias_attr=False), nn.BatchNorm2D(cout), nn.ReLU()]
    net = nn.Sequential(*block(3, 32), *block(32, 64), *block(64, 128), *block(128, 256),
                        nn.AdaptiveAvgPool2D(1), nn.Flatten(), nn.BatchNorm1D(256))
    return net, nn.Linear(256, num_classes)


def probe_cnn(proto, images, epochs, report, seed):
    """Train the probe CNN; ``report(label, q_feats, g_feats)`` after 0 epochs and every 5 epochs."""
    import paddle
    import paddle.nn.functional as F

    paddle.seed(seed)
    rng = np.random.default_rng(seed)
    labels, num_classes = market.relabel(proto.train)
    height, width = images["train"].shape[1:3]
    train_tf = transforms.build_transforms((3, height, width), train=True, erase_prob=0.3, seed=seed)
    eval_tf = transforms.build_transforms((3, height, width), train=False)
    net, head = build_probe(num_classes)
    opt = paddle.optimizer.Adam(learning_rate=3e-3, parameters=net.parameters() + head.parameters())

    def embed(batch_images):
        net.eval()
        with paddle.no_grad():
            batches = [np.stack([eval_tf(im) for im in batch_images[k:k + 256]])
                       for k in range(0, len(batch_images), 256)]
            out = np.concatenate([net(paddle.to_tensor(batch)).numpy() for batch in batches])
        net.train()
        return out

    report("probe CNN, untrained", embed(images["query"]), embed(images["gallery"]))
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(labels))
        for start in range(0, len(order) - 31, 32):
            idx = order[start:start + 32]
            x = paddle.to_tensor(np.stack([train_tf(images["train"][i]) for i in idx]))
            loss = F.cross_entropy(head(net(x)), paddle.to_tensor(labels[idx]), label_smoothing=0.1)
            loss.backward()
            opt.step()
            opt.clear_grad()
        if epoch % 5 == 0 or epoch == epochs:
            report("probe CNN, %d epochs" % epoch, embed(images["query"]), embed(images["gallery"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", help="an existing synthetic dataset (default: generate one in a temp folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=10, help="probe CNN training epochs (0: skip the CNN)")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root
        if root is None:
            root = os.path.join(tmp, "synthetic")
            wall, cpu = time.time(), time.process_time()
            counts = synthetic.generate(root, seed=args.seed)
            print("generated %s in %.1f s wall, %.1f s CPU: %s"
                  % (root, time.time() - wall, time.process_time() - cpu,
                     ", ".join("%s %d" % kv for kv in sorted(counts.items()))))
        proto = market.load_protocol(root)
        images = {split: load_rgb(getattr(proto, split)) for split in ("train", "query", "gallery")}
        (qp, qc), (gp, gc) = ids(proto.query), ids(proto.gallery)

        def report(name, qf, gf, metric="cosine"):
            result = metrics.evaluate_ranking((qf, gf), qp, gp, qc, gc, metric=metric)
            rows.append((name, result["rank1"], result["mAP"]))
            print("  %-34s Rank-1 %5.1f%%  mAP %5.1f%%" % (name, 100 * result["rank1"], 100 * result["mAP"]),
                  flush=True)

        print("%d queries of %d ids, gallery %d; chance Rank-1 ~ %.1f%%"
              % (len(qp), len(set(qp)), len(gp), 100.0 / len(set(qp))))
        flat = {k: v.reshape(len(v), -1) / 255.0 for k, v in images.items()}
        report("raw pixels", flat["query"], flat["gallery"], "euclidean")
        hists = {k: synthetic.colour_histograms(v) for k, v in images.items()}
        report("RGB histograms", hists["query"], hists["gallery"], "euclidean")
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
        lda = LinearDiscriminantAnalysis(n_components=40, solver="eigen", shrinkage=0.5)
        lda.fit(hists["train"], ids(proto.train)[0])
        report("RGB histograms + LDA on train ids", lda.transform(hists["query"]), lda.transform(hists["gallery"]),
               "euclidean")
        if args.epochs > 0:
            probe_cnn(proto, images, args.epochs, report, args.seed)

    print("\n| %-34s | Rank-1 | mAP   |" % "descriptor")
    print("|%s|--------|-------|" % ("-" * 36))
    for name, rank1, mean_ap in rows:
        print("| %-34s | %5.1f%% | %4.1f%% |" % (name, 100 * rank1, 100 * mean_ap))


if __name__ == "__main__":
    main()
