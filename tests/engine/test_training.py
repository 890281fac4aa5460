"""The training loop end to end on the synthetic set: learning, exact resume, divergence stop, flags."""
import json
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from metric_learning import errors, train_elem, train_pair
from metric_learning.deploy import artifact, embedders, export
from metric_learning.engine import build, solver, trainer
from metric_learning.engine import teacher as teacher_module
from metric_learning.models import checkpoint
from conftest import ROOT

SMALL = ["--model", "MobileNetV3_small_x1_0", "--image_shape", "3,64,32", "--train_batch_size", "16",
         "--samples_each_class", "4", "--display_iter_step", "1000", "--loader_threads", "1"]


def elem_args(synthetic_root, save_dir, *extra):
    return train_elem.parse_args(SMALL + ["--synthetic_root", synthetic_root, "--model_save_dir", str(save_dir)]
                                 + list(extra))


def weights_of(layer):
    return {k: v.numpy().copy() for k, v in layer.state_dict().items()}


def test_classic_notebook_command_parses():
    args = train_elem.parse_args(
        "--model ResNet50_vd --embedding_size 128 --train_batch_size 256 --test_batch_size 50 "
        "--image_shape 3,128,128 --class_dim 751 --lr 0.01 --lr_strategy piecewise_decay --lr_steps 5000,7000 "
        "--total_iter_num 8000 --display_iter_step 10 --test_iter_step 1000 --save_iter_step 1000 "
        "--use_gpu False --pretrained_model pretrained_model/ResNet50_vd_ssld_v2_pretrained "
        "--model_save_dir save_elem_model --loss_name arcmargin --arc_scale 80.0 --arc_margin 0.15 "
        "--arc_easy_margin False".split())
    assert (args.model, args.embedding_size, args.image_shape, args.loss_name) == ("ResNet50_vd", 128, (3, 128, 128), "arcmargin")
    assert (args.arc_scale, args.arc_margin, args.arc_easy_margin, args.use_gpu) == (80.0, 0.15, False, False)
    assert solver.parse_lr_steps(args.lr_steps, args.total_iter_num) == [5000, 7000]
    pair = train_pair.parse_args("--model ResNet50_vd --embedding_size 128 --batch_size 80 --samples_each_class 4 "
                                 "--loss_name npairs --npairs_reg_lambda 0.01 --margin 0.1 --lr 0.0001".split())
    assert (pair.train_batch_size, pair.samples_each_class, pair.loss_name) == (80, 4, "npairs")


@pytest.mark.parametrize("cwd", [ROOT, os.path.join(ROOT, "metric_learning")])
def test_scripts_run_from_repo_root_and_from_package_dir(cwd):
    script = "metric_learning/train_elem.py" if cwd == ROOT else "train_elem.py"
    out = subprocess.run([sys.executable, script, "--help"], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--arc_margin" in out.stdout and "--samples_each_class" in out.stdout


def test_wrong_class_dim_names_the_right_one(synthetic_root, tmp_path):
    args = elem_args(synthetic_root, tmp_path, "--class_dim", "751")
    with pytest.raises(errors.ConfigError, match="has 60 classes; pass --class_dim 60"):
        build.build_trainer(args, train_elem.build_criterion, log=lambda *_: None)


@pytest.fixture(scope="module")
def synthetic_model(synthetic_root, tmp_path_factory):
    """A MobileNetV3_small trained for 220 iterations (about 10 epochs) on the synthetic set.

    Measured with this recipe: untrained mAP about 0.04, trained Rank-1 0.30 / mAP 0.23 (chance Rank-1: 0.017).
    """
    save = tmp_path_factory.mktemp("elem")
    args = elem_args(synthetic_root, save, "--image_shape", "3,128,64", "--train_batch_size", "32",
                     "--samples_each_class", "0", "--optimizer", "adam", "--lr", "0.003", "--lr_strategy", "constant",
                     "--weight_decay", "0", "--erase_prob", "0.3", "--total_iter_num", "220")
    run = build.build_trainer(args, train_elem.build_criterion, log=lambda *_: None)
    untrained = run.evaluate_fn(run.net)
    trained = run.fit()
    return {"untrained": untrained, "trained": trained, "run_dir": os.path.join(str(save), args.model),
            "evaluate": run.evaluate_fn}


def test_learns_the_synthetic_set_far_above_untrained(synthetic_model):
    untrained, trained = synthetic_model["untrained"], synthetic_model["trained"]
    assert untrained["mAP"] < 0.1
    assert trained["mAP"] > untrained["mAP"] + 0.12
    assert trained["rank1"] > untrained["rank1"] + 0.15
    log = [json.loads(line) for line in open(os.path.join(synthetic_model["run_dir"], "train_log.jsonl"))]
    assert log[-1]["eval"]["mAP"] == pytest.approx(trained["mAP"])
    progress = [record for record in log if "images_per_s" in record]
    assert progress and all(0 <= record["data_wait"] < 1 for record in progress)


class CountingImages:
    """Image i is filled with i; its label is i // 2."""

    def __init__(self, size):
        self.labels = [i // 2 for i in range(size)]

    def load_image(self, index):
        return np.full((4, 2, 3), index, np.uint8)


def jitter(image, rng):
    return image.transpose(2, 0, 1).astype(np.float32) + rng.random()


@pytest.mark.parametrize("prefetch", [0, 1, 4])
def test_batch_stream_gives_the_same_batches_with_or_without_prefetching(prefetch):
    from metric_learning.data import samplers

    def batches(prefetch_batches, start, stop):
        sampler = samplers.RandomBatchSampler(10, 4, seed=3)
        stream = trainer.BatchStream(CountingImages(10), jitter, sampler, seed=7, threads=2,
                                     prefetch=prefetch_batches)
        return list(stream.iterate(start, stop))

    reference, streamed = batches(4, 0, 6), batches(prefetch, 0, 6)
    assert [item[0] for item in streamed] == list(range(6))
    for (_, images, labels, state), (_, ref_images, ref_labels, ref_state) in zip(streamed, reference):
        np.testing.assert_array_equal(images, ref_images)
        np.testing.assert_array_equal(labels, ref_labels)
        np.testing.assert_array_equal(labels, images[:, 0, 0, 0].astype(int) // 2)
        assert state == ref_state
    # 10 images in batches of 4: each epoch of 2 batches sees 8 different images
    assert len({int(v) for item in streamed[:2] for v in item[1][:, 0, 0, 0]}) == 8


@pytest.mark.parametrize("loss_name", ["triplet", "quadruplet", "eml", "npairs"])
def test_short_pair_fine_tune_does_not_make_the_model_worse(synthetic_model, synthetic_root, tmp_path, loss_name):
    args = train_pair.parse_args(SMALL + ["--image_shape", "3,128,64", "--synthetic_root", synthetic_root,
                                          "--model_save_dir", str(tmp_path), "--train_batch_size", "32",
                                          "--loss_name", loss_name, "--lr", "0.0001", "--total_iter_num", "30",
                                          "--pretrained_model", os.path.join(synthetic_model["run_dir"], "latest")])
    run = build.build_trainer(args, train_pair.build_criterion, log=lambda *_: None)
    before = run.evaluate_fn(run.net)
    assert before["mAP"] == pytest.approx(synthetic_model["trained"]["mAP"], abs=1e-4)  # backbone + head kept
    after = run.fit()
    assert after["mAP"] >= before["mAP"] - 0.01, (before, after)


class Interrupt(Exception):
    pass


def test_killed_and_resumed_run_ends_with_the_same_weights(synthetic_root, tmp_path, monkeypatch):
    import paddle

    common = ("--total_iter_num", "6", "--save_iter_step", "3", "--lr", "0.05", "--lr_strategy", "cosine",
              "--warmup_iter_num", "2", "--erase_prob", "0.5", "--test_iter_step", "100000")
    quiet = lambda *_: None  # noqa: E731

    def build_run(save_dir, *extra):  # each run in its own name scope, as run_training does
        run = build.build_trainer(elem_args(synthetic_root, save_dir, *common, *extra),
                                  train_elem.build_criterion, quiet)
        run.evaluate_fn = None
        return run

    with paddle.utils.unique_name.guard():
        straight = build_run(tmp_path / "a")
        straight.fit()

    with paddle.utils.unique_name.guard():
        killed = build_run(tmp_path / "b")
        real_step = killed.optimizer.step

        def step_then_die():
            real_step()
            if killed.iteration == 4:  # dies during iteration 5, after the checkpoint at 3
                raise Interrupt()

        monkeypatch.setattr(killed.optimizer, "step", step_then_die)
        with pytest.raises(Interrupt):
            killed.fit()
        monkeypatch.undo()

    latest = os.path.join(tmp_path / "b", "MobileNetV3_small_x1_0", "latest")
    assert os.path.basename(os.path.realpath(latest)) == "3"
    with paddle.utils.unique_name.guard():
        resumed = build_run(tmp_path / "b", "--checkpoint", latest)
        resumed.resume(latest)
        assert resumed.iteration == 3
        resumed.fit()
    a, b = weights_of(straight.net), weights_of(resumed.net)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert resumed.optimizer.get_lr() == pytest.approx(straight.optimizer.get_lr())


def test_checkpoint_that_does_not_fit_is_a_clear_error(synthetic_root, tmp_path):
    args = elem_args(synthetic_root, tmp_path, "--total_iter_num", "1")
    run = build.build_trainer(args, train_elem.build_criterion, log=lambda *_: None)
    run.evaluate_fn = None
    run.fit()
    other = elem_args(synthetic_root, tmp_path / "other", "--total_iter_num", "1", "--embedding_size", "64")
    resumed = build.build_trainer(other, train_elem.build_criterion, log=lambda *_: None)
    with pytest.raises(checkpoint.CheckpointError, match="does not fit the model"):
        resumed.resume(os.path.join(tmp_path, args.model, "latest"))


@pytest.mark.parametrize("input_name", sorted(export.INPUT_NAMES))
def test_export_then_load_gives_the_eager_embeddings(synthetic_root, tmp_path, input_name):
    args = elem_args(synthetic_root, tmp_path, "--total_iter_num", "2")
    run = build.build_trainer(args, train_elem.build_criterion, log=lambda *_: None)
    run.evaluate_fn = None
    run.fit()
    latest = os.path.join(tmp_path, args.model, "latest")
    net = checkpoint.load_model_for_eval(latest)
    prefix = str(tmp_path / "exported" / "reid")
    config = export.export_inference_model(net, prefix, (3, 64, 32), input_name=input_name)
    assert config["input_name"] == input_name and config["feature_dim"] == net.embedding_dim
    batch = np.random.default_rng(0).normal(size=(5, 3, 64, 32)).astype("float32")
    import paddle

    eager = paddle.nn.functional.normalize(net(paddle.to_tensor(batch)), axis=1).numpy()
    embedder = embedders.PredictorEmbedder(prefix)
    assert embedder.predictor.get_input_names() == [input_name]
    np.testing.assert_allclose(embedder(batch), eager, atol=1e-4)
    with pytest.raises(ValueError, match=r"expects batches of shape \[N, 3, 64, 32\]"):
        embedder(batch[:, :, :32])


def test_list_file_training_evaluates_leave_one_out_recall(synthetic_root, tmp_path):
    from metric_learning.data import listfile

    counts = listfile.build_market_lists(synthetic_root, str(tmp_path / "lists"))
    args = train_elem.parse_args(SMALL + ["--train_list", counts["train"]["path"], "--test_list", counts["test"]["path"],
                                          "--image_root", synthetic_root, "--model_save_dir", str(tmp_path / "m"),
                                          "--total_iter_num", "2", "--samples_each_class", "0"])
    run = build.build_trainer(args, train_elem.build_criterion, log=lambda *_: None)
    assert run.criterion.classification.weight.shape[0] == counts["train"]["classes"]
    metrics = run.fit()
    assert 0.0 <= metrics["recall@1"] <= 1.0
    assert metrics["num_images"] == counts["test"]["images"]


def test_train_list_without_image_root_names_the_flag(tmp_path):
    args = train_elem.parse_args(["--train_list", str(tmp_path / "train.txt")])
    with pytest.raises(errors.ConfigError, match="--image_root"):
        build.resolve_data(args)


def test_training_from_cached_frozen_outputs_equals_running_the_frozen_stages(synthetic_root, tmp_path):
    import paddle

    common = ("--total_iter_num", "3", "--lr", "0.05", "--freeze_stages", "2", "--pad", "0", "--erase_prob", "0",
              "--flip_prob", "0.5", "--test_iter_step", "100000")
    runs = []
    for cached in ("False", "True"):
        with paddle.utils.unique_name.guard():
            run = build.build_trainer(elem_args(synthetic_root, tmp_path / cached, *common,
                                                     "--cache_frozen", cached),
                                           train_elem.build_criterion, lambda *_: None)
            run.evaluate_fn = None
            run.fit()
            runs.append(run)
    uncached, cached = (weights_of(run.net) for run in runs)
    for key in uncached:   # same flips (one draw per slot either way), same maps, same updates
        np.testing.assert_allclose(cached[key], uncached[key], rtol=1e-4, atol=1e-5, err_msg=key)
    before = weights_of(build.build_trainer(elem_args(synthetic_root, tmp_path / "init", *common),
                                                 train_elem.build_criterion, lambda *_: None).net)
    changed = sum(not np.allclose(before[key], cached[key]) for key in cached)
    assert changed > len(cached) // 2   # the unfrozen part really trained


def test_cache_frozen_refuses_augmentation_it_cannot_cache(synthetic_root, tmp_path):
    args = elem_args(synthetic_root, tmp_path, "--freeze_stages", "2", "--cache_frozen", "True")
    with pytest.raises(ValueError, match=r"--cache_frozen True needs .*--pad 0 and --erase_prob 0.*got "
                                         r"--freeze_stages 2 --pad 10 --erase_prob 0.5"):
        build.build_trainer(args, train_elem.build_criterion, log=lambda *_: None)


def test_pretrained_checkpoint_keeps_its_classifier_when_it_fits(synthetic_model, synthetic_root, tmp_path):
    import paddle

    latest = os.path.join(synthetic_model["run_dir"], "latest")
    saved = paddle.load(os.path.join(latest, checkpoint.CRITERION_FILE))
    assert saved  # softmax owns a classifier
    args = elem_args(synthetic_root, tmp_path / "same", "--image_shape", "3,128,64", "--pretrained_model", latest)
    kept = weights_of(build.build_trainer(args, train_elem.build_criterion, log=lambda *_: None).criterion)
    assert sorted(kept) == sorted(saved)
    for key, value in saved.items():
        np.testing.assert_array_equal(kept[key], value.numpy())

    logs = []  # a 64-d embedding cannot use a classifier trained on the backbone-width one
    other = elem_args(synthetic_root, tmp_path / "other", "--image_shape", "3,128,64", "--pretrained_model", latest,
                      "--embedding_size", "64")
    fresh = weights_of(build.build_trainer(other, train_elem.build_criterion, log=logs.append).criterion)
    assert any(line.startswith("classifier not reused") for line in logs), logs
    assert all(fresh[key].shape != value.shape for key, value in saved.items() if key in fresh)



def export_teacher(prefix, image_shape):
    """An exported, untrained PPLCNet: a teacher of another architecture and embedding width than SMALL's."""
    from metric_learning.models.reid_net import build_model

    export.export_inference_model(build_model("PPLCNet_x1_0"), prefix, image_shape)
    return prefix


def test_teacher_embeds_every_batch_and_its_loss_is_weighted_in(synthetic_root, tmp_path):
    teacher = export_teacher(str(tmp_path / "teacher" / "reid"), (3, 64, 32))
    args = elem_args(synthetic_root, tmp_path, "--total_iter_num", "4", "--display_iter_step", "1",
                     "--teacher_model", teacher, "--distill_weight", "0.5")
    logs = []
    run = build.build_trainer(args, train_elem.build_criterion, log=logs.append)
    run.evaluate_fn = None
    run.fit()
    assert any(line.startswith("distilling from %s" % teacher) for line in logs), logs
    records = [json.loads(line) for line in open(os.path.join(tmp_path, args.model, "train_log.jsonl"))]
    assert [r["iter"] for r in records] == [1, 2, 3, 4]
    for record in records:
        assert 0 < record["distill_loss"] < 100  # a KL divergence between two different rankings: positive, finite
        assert record["loss"] == pytest.approx(record["softmax_loss"] + 0.5 * record["distill_loss"], abs=2e-5)


def test_teacher_of_another_size_reads_each_batch_resized_to_its_input(synthetic_root, tmp_path):
    teacher_prefix = export_teacher(str(tmp_path / "teacher" / "reid"), (3, 128, 64))
    args = elem_args(synthetic_root, tmp_path, "--teacher_model", teacher_prefix)  # SMALL trains at 3,64,32
    logs = []
    teacher = build.build_trainer(args, train_elem.build_criterion, log=logs.append).teacher
    assert any(line.startswith("distilling from %s" % teacher_prefix)
               and line.endswith("batches resized to its input 3,128,64)") for line in logs), logs
    batch = np.random.default_rng(0).normal(size=(5, 3, 64, 32)).astype("float32")
    seen = []
    teacher.embedder.run = lambda resized: seen.append(resized) or np.zeros((len(resized), 4), "float32")
    assert teacher(batch).shape == (5, 4)
    # each image and channel resized on its own, as OpenCV resizes one 64x32 plane to 128x64
    expected = [[cv2.resize(plane, (64, 128), interpolation=cv2.INTER_LINEAR) for plane in image] for image in batch]
    np.testing.assert_allclose(seen[0], np.array(expected), atol=1e-6)
    # a constant image stays constant, whatever the channel
    flat = np.broadcast_to(np.array([1.0, -2.0, 3.0], "float32")[None, :, None, None], (2, 3, 64, 32))
    teacher(flat)
    np.testing.assert_allclose(seen[1], np.broadcast_to(flat[:, :, :1, :1], (2, 3, 128, 64)), atol=1e-6)


class FixedTeacher:
    """A teacher stand-in that returns the same features for any batch."""

    def __init__(self, features):
        self.features = np.array(features, dtype="float32")

    def __call__(self, batch):
        return self.features


def test_teacher_ensemble_cosine_is_the_weighted_mean_of_the_members_cosines():
    # member a: cos((3,4), (4,3)) = 24/25 = 0.96; member b: cos((2,0), (0,5)) = 0; weights 3:1 -> 0.75 and 0.25
    ensemble = teacher_module.TeacherEnsemble([FixedTeacher([[3, 4], [4, 3]]), FixedTeacher([[2, 0], [0, 5]])],
                                              [3, 1])
    joined = ensemble(np.zeros((2, 3, 8, 4), "float32"))
    assert joined.shape == (2, 4)
    np.testing.assert_allclose(np.linalg.norm(joined, axis=1), [1, 1], rtol=1e-6)
    assert float(joined[0] @ joined[1]) == pytest.approx(0.75 * 0.96 + 0.25 * 0.0, abs=1e-6)
    np.testing.assert_allclose(joined[0], [np.sqrt(0.75) * 0.6, np.sqrt(0.75) * 0.8, np.sqrt(0.25), 0], rtol=1e-6)


@pytest.mark.parametrize("models, weights, expected", [
    ("a", None, [("a", 1.0)]),
    ("a, b", None, [("a", 0.5), ("b", 0.5)]),
    ("a,b", "0.75,0.25", [("a", 0.75), ("b", 0.25)]),
    (None, None, []),
])
def test_teacher_flags_name_each_model_and_its_weight(models, weights, expected):
    assert teacher_module.parse_teacher_flags(models, weights) == expected


@pytest.mark.parametrize("models, weights, message", [
    ("a,b", "1", "--teacher_weights has 1 values for the 2 models of --teacher_model"),
    ("a,b", "1,x", "--teacher_weights '1,x': expected numbers"),
    ("a,b", "1,0", "--teacher_weights must all be finite and > 0"),
    ("a,b", "1,nan", "--teacher_weights must all be finite and > 0"),
    ("a,b", "1,inf", "--teacher_weights must all be finite and > 0"),
    ("a,,b", None, "--teacher_model 'a,,b' has an empty entry"),
    (None, "1", "--teacher_weights 1 needs --teacher_model"),
])
def test_teacher_flags_that_do_not_fit_are_a_clear_error(models, weights, message):
    with pytest.raises(errors.ConfigError, match=re.escape(message)):
        teacher_module.parse_teacher_flags(models, weights)


def test_two_teachers_of_other_sizes_teach_as_one_weighted_ensemble(synthetic_root, tmp_path):
    first = export_teacher(str(tmp_path / "first" / "reid"), (3, 64, 32))
    second = export_teacher(str(tmp_path / "second" / "reid"), (3, 128, 64))
    args = elem_args(synthetic_root, tmp_path, "--teacher_model", first + "," + second, "--teacher_weights", "3,1")
    logs = []
    teacher = build.build_trainer(args, train_elem.build_criterion, log=logs.append).teacher
    assert [line for line in logs if line.startswith("distilling from")] == [
        "distilling from %s (512-d embeddings, weight 3)" % first,
        "distilling from %s (512-d embeddings, weight 1, batches resized to its input 3,128,64)" % second]
    batch = np.random.default_rng(0).normal(size=(4, 3, 64, 32)).astype("float32")
    alone = [member(batch) for member in teacher.members]
    cosines = [normalized(features) @ normalized(features).T for features in alone]
    joined = teacher(batch)
    np.testing.assert_allclose(joined @ joined.T, 0.75 * cosines[0] + 0.25 * cosines[1], atol=1e-5)


def normalized(features):
    return features / np.linalg.norm(features, axis=1, keepdims=True)


def test_teacher_that_reads_other_pixels_is_a_clear_error(synthetic_root, tmp_path):
    teacher = export_teacher(str(tmp_path / "teacher" / "reid"), (3, 128, 64))
    config_path = teacher + artifact.CONFIG_SUFFIX
    config = json.load(open(config_path))
    json.dump(dict(config, input_shape=[1, 128, 64]), open(config_path, "w"))
    with pytest.raises(ValueError, match=r"--image_shape 3,64,32 does not match the exported model's input 1,128,64 "
                                         r"\(.*reid\) given as --teacher_model: the channels must match"):
        build.build_trainer(elem_args(synthetic_root, tmp_path, "--teacher_model", teacher),
                            train_elem.build_criterion, log=lambda *_: None)
    json.dump(dict(config, channel_order="BGR"), open(config_path, "w"))
    args = elem_args(synthetic_root, tmp_path, "--image_shape", "3,128,64", "--teacher_model", teacher)
    with pytest.raises(ValueError, match="expects channel_order BGR but training batches have RGB"):
        build.build_trainer(args, train_elem.build_criterion, log=lambda *_: None)
    with pytest.raises(errors.ConfigError, match="--teacher_model needs the training images"):
        build.build_trainer(elem_args(synthetic_root, tmp_path, "--teacher_model", teacher, "--freeze_stages", "1",
                                           "--cache_frozen", "True", "--pad", "0", "--erase_prob", "0"),
                                 train_elem.build_criterion, log=lambda *_: None)
