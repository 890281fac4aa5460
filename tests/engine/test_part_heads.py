"""Training PCB and MGN end to end on the synthetic set: the logged loss terms, the checkpoint, the export; and the
flags a part head refuses before any work."""
import json
import os
import re

import numpy as np
import pytest

from metric_learning import export_model, train_elem, train_pair
from metric_learning.deploy import artifact
from metric_learning.engine import build
from metric_learning.models import checkpoint
from metric_learning.models.heads import MGNNet, PCBNet

# MobileNetV3_small at 64x32: a 4x2 map at stride 16 (PCB, MGN's part branches), 2x1 at 32 (MGN's global branch)
SMALL = ["--model", "MobileNetV3_small_x1_0", "--image_shape", "3,64,32", "--train_batch_size", "8",
         "--samples_each_class", "4", "--display_iter_step", "1000", "--loader_threads", "1", "--total_iter_num", "2"]
MGN_FEATURES = ("global", "p2_global", "p3_global", "p2_part1", "p2_part2", "p3_part1", "p3_part2", "p3_part3")
EXPECTED_TERMS = {
    "pcb": ["softmax_part%d_loss" % i for i in (1, 2, 3, 4)],
    "mgn": ["softmax_%s_loss" % name for name in MGN_FEATURES]
           + ["triplet_%s_loss" % name for name in MGN_FEATURES[:3]],
}
HEAD_FLAGS = {"pcb": ["--num_parts", "4"], "mgn": ["--triplet_weight", "1.0"]}


@pytest.mark.parametrize("head", ["pcb", "mgn"])
def test_a_short_run_logs_every_loss_term_and_exports(head, synthetic_root, tmp_path):
    args = train_elem.parse_args(SMALL + ["--head", head, "--synthetic_root", synthetic_root,
                                          "--model_save_dir", str(tmp_path)] + HEAD_FLAGS[head])
    run = build.build_trainer(args, train_elem.build_criterion, log=lambda *_: None)
    run.evaluate_fn = None
    run.fit()
    with open(os.path.join(tmp_path, args.model, "train_log.jsonl")) as f:
        records = [json.loads(line) for line in f]
    record = [r for r in records if "loss" in r][-1]
    assert record["iter"] == 2
    terms = sorted(k for k in record if k.endswith("_loss"))
    assert terms == sorted(EXPECTED_TERMS[head])
    softmax = np.mean([record[k] for k in terms if k.startswith("softmax_")])
    triplet = np.mean([record[k] for k in terms if k.startswith("triplet_")]) if head == "mgn" else 0.0
    assert record["loss"] == pytest.approx(softmax + triplet, abs=1e-4)
    assert 0.0 <= record["acc"] <= 1.0

    latest = os.path.join(tmp_path, args.model, "latest")
    assert checkpoint.read_config(latest)["model"]["head"] == head
    net = checkpoint.load_model_for_eval(latest)
    assert isinstance(net, PCBNet if head == "pcb" else MGNNet)
    prefix = str(tmp_path / "exported" / "reid")
    export_model.main(["--checkpoint", latest, "--output", prefix, "--flip", "True"])
    config = artifact.read_export_config(prefix)[1]
    assert config["flip"] is True and config["feature_dim"] == (4 if head == "pcb" else 8) * 256


@pytest.mark.parametrize("flags, message", [
    (["--head", "pcb", "--triplet_weight", "1", "--samples_each_class", "4"], "--triplet_weight: --head pcb"),
    (["--head", "mgn", "--embedding_size", "128"], "--embedding_size 128 belong to the global head"),
    (["--head", "mgn", "--pooling", "gem"], "--pooling gem belong to the global head"),
    (["--head", "pcb", "--last_stride", "2"], "--last_stride 2 applies to --head global"),
    (["--head", "pcb", "--num_parts", "0"], "--num_parts must be >= 1"),
    (["--head", "mgn", "--teacher_model", "teacher"], "--teacher_model .* --head global only"),
])
def test_flags_a_part_head_refuses_are_named_at_parse_time(flags, message, capsys):
    with pytest.raises(SystemExit):
        train_elem.parse_args(flags)
    assert re.search(message, capsys.readouterr().err)


def test_train_pair_refuses_a_part_head(capsys):
    with pytest.raises(SystemExit):
        train_pair.parse_args(["--head", "mgn"])
    assert "train_pair.py fine-tunes the global head" in capsys.readouterr().err


def test_stripes_that_do_not_fit_the_input_are_refused_before_the_images_are_read(tmp_path):
    args = train_elem.parse_args(SMALL + ["--head", "pcb", "--num_parts", "6", "--dataset_root",
                                          str(tmp_path / "no_such_dataset"), "--model_save_dir", str(tmp_path)])
    with pytest.raises(ValueError, match=r"--image_shape 3,64,32: 6 stripes need a feature map at least 6 rows "
                                         r"high, this one has 4"):
        build.build_trainer(args, train_elem.build_criterion, log=lambda *_: None)
