"""The main job on the embedded synthetic dataset: train -> evaluate -> export, in a few minutes on a CPU.

    make demo            (or: python -m metric_learning.demo [--output_dir demo_output])

Each step is the exact command a user would type from the repository root (with the interpreter that runs the
demo, ``.venv/bin/python`` under ``make demo``); they are printed before they run. A rerun starts over
(``--overwrite True``), since the demo's output directory is its own.
"""
import argparse
import os
import shlex
import subprocess
import sys
import time

from metric_learning.config.flags import REPO_ROOT

MODEL = "MobileNetV3_small_x1_0"
IMAGE_SHAPE = "3,128,64"


def steps(output_dir, iterations):
    data = os.path.join(output_dir, "synthetic")
    save = os.path.join(output_dir, "models")
    checkpoint = os.path.join(save, MODEL, "latest")
    exported = os.path.join(output_dir, "inference", "reid")
    return [
        ("train (label-smoothed softmax on the BNNeck embedding; the synthetic set is generated first)",
         ["metric_learning/train_elem.py", "--model", MODEL, "--image_shape", IMAGE_SHAPE,
          "--synthetic_root", data, "--model_save_dir", save, "--total_iter_num", str(iterations),
          "--train_batch_size", "32", "--optimizer", "adam", "--lr", "0.003", "--lr_strategy", "constant",
          "--weight_decay", "0", "--erase_prob", "0.3", "--display_iter_step", "50", "--overwrite", "True"]),
        ("evaluate (query vs gallery with same-camera matches and junk removed)",
         ["metric_learning/eval.py", "--checkpoint", checkpoint, "--dataset_root", data,
          "--json", os.path.join(output_dir, "metrics.json")]),
        ("export an inference model for trackers",
         ["metric_learning/export_model.py", "--checkpoint", checkpoint, "--output", exported]),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", default="demo_output", help="everything the demo writes goes here")
    parser.add_argument("--iterations", type=int, default=300, help="training iterations")
    args = parser.parse_args(argv)
    start = time.time()
    # the interpreter as the user can type it from the repository root (.venv/bin/python under make demo)
    python = (os.path.relpath(sys.executable, REPO_ROOT) if sys.executable.startswith(REPO_ROOT + os.sep)
              else sys.executable)
    for title, command in steps(args.output_dir, args.iterations):
        print("\n== %s\n$ %s %s" % (title, python, " ".join(shlex.quote(c) for c in command)), flush=True)
        subprocess.run([sys.executable] + command, cwd=REPO_ROOT, check=True)
    print("\ndemo finished in %.0f s; outputs in %s" % (time.time() - start, args.output_dir))


if __name__ == "__main__":
    main()
