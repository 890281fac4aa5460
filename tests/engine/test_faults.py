"""Fault tests in one place: bad inputs that must be refused clearly, faults a run must survive.

docs/reliability.md counts these tests; keep the counts there in step.
"""
import json
import os
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from metric_learning import errors, train_elem
from metric_learning.data import images, listfile
from metric_learning.engine import build, rundir, trainer
from metric_learning.evaluation import evaluator
from metric_learning.models import checkpoint
from conftest import ROOT

SMALL = ["--model", "MobileNetV3_small_x1_0", "--image_shape", "3,64,32", "--train_batch_size", "16",
         "--samples_each_class", "4", "--display_iter_step", "1000", "--loader_threads", "1"]


def quiet(*_):
    pass


@pytest.fixture(autouse=True)
def own_image_cache(tmp_path, monkeypatch):
    """Each test starts with an empty image-check cache of its own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(images, "_VERIFIED", {})


def jpeg_bytes(image=None):
    image = np.random.default_rng(0).integers(0, 256, (64, 32, 3), dtype=np.uint8) if image is None else image
    return cv2.imencode(".jpg", image)[1].tobytes()


def png_claiming(width, height):
    """A tiny PNG whose header announces ``width`` x ``height`` pixels (a decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


# ----- bad image files: each refused with the file and the reason -------------------------------------------
BAD_FILES = {
    "garbage.jpg": (lambda: b"this is not an image", "not a readable image file"),
    "truncated.jpg": (lambda: jpeg_bytes()[:len(jpeg_bytes()) // 2], r"truncated JPEG: no end-of-image marker"),
    "zero.jpg": (lambda: b"", r"empty file \(0 bytes\)"),
    "notes.png": (lambda: b"name,pid\na,1\n", "not a readable image file"),
    "truncated.png": (lambda: cv2.imencode(".png", np.full((32, 16, 3), 7, np.uint8))[1].tobytes()[:-30],
                      "not a readable image file"),
    "bomb.png": (lambda: png_claiming(50000, 50000), r"image too large"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_image_file_is_refused_naming_it(tmp_path, name):
    make, reason = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(make())
    with pytest.raises(images.BadImageError, match=r"%s.*%s" % (name.replace(".", r"\."), reason)):
        images.read_image(path)


def test_missing_file_and_directory_are_refused(tmp_path):
    (tmp_path / "folder.jpg").mkdir()
    bad = images.check_images([tmp_path / "gone.jpg", tmp_path / "folder.jpg"], on_bad_image="skip")
    assert [reason for _, reason in bad] == ["file does not exist", "is a directory"]


def test_unusual_but_valid_images_decode_to_8_bit_rgb(tmp_path):
    rgb = np.zeros((40, 20, 3), np.uint8)
    rgb[:, :10] = (200, 30, 10)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.jpg", quality=100)
    deep = (np.arange(40 * 20, dtype=np.uint16).reshape(40, 20) * 80)
    cv2.imwrite(str(tmp_path / "deep16.png"), deep)
    cv2.imwrite(str(tmp_path / "alpha.png"), np.dstack([rgb[..., ::-1], np.full((40, 20), 128, np.uint8)]))
    cv2.imwrite(str(tmp_path / "huge.jpg"), np.full((4000, 3000, 3), 90, np.uint8))
    for name in ("cmyk.jpg", "gray.jpg", "deep16.png", "alpha.png", "huge.jpg"):
        image = images.read_image(tmp_path / name)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, name
    np.testing.assert_allclose(images.read_image(tmp_path / "cmyk.jpg")[20, 5], (200, 30, 10), atol=6)
    np.testing.assert_array_equal(images.read_image(tmp_path / "deep16.png")[..., 0], deep >> 8)
    np.testing.assert_array_equal(images.read_image(tmp_path / "alpha.png"), rgb)
    assert images.read_image(tmp_path / "huge.jpg").shape == (4000, 3000, 3)


def test_every_bad_file_is_named_in_one_error_first_20_and_a_count(tmp_path):
    good = tmp_path / "good.jpg"
    good.write_bytes(jpeg_bytes())
    bad = []
    for i in range(25):
        bad.append(tmp_path / ("bad%02d.jpg" % i))
        bad[-1].write_bytes(b"junk")
    with pytest.raises(images.BadImagesError) as info:
        images.check_images([good] + bad)
    message = str(info.value)
    assert message.startswith("25 of 26 images cannot be read")
    assert "bad19.jpg" in message and "bad20.jpg" not in message and message.endswith("... and 5 more")
    assert len(info.value.bad) == 25


def test_second_check_only_stats_and_a_changed_file_is_checked_again(tmp_path, monkeypatch):
    paths = []
    for i in range(3):
        paths.append(tmp_path / ("img%d.jpg" % i))
        paths[-1].write_bytes(jpeg_bytes())
    decoded = []
    real = images.read_image_bgr
    monkeypatch.setattr(images, "read_image_bgr", lambda p: decoded.append(p) or real(p))
    assert images.check_images(paths) == []
    assert len(decoded) == 3
    monkeypatch.setattr(images, "_VERIFIED", {})   # a new process: only the cache file remembers
    images.check_images(paths)
    assert len(decoded) == 3
    paths[1].write_bytes(jpeg_bytes()[:-100])       # damaged later: new size and mtime
    with pytest.raises(images.BadImagesError, match="img1.jpg: corrupt image"):
        images.check_images(paths)
    assert len(decoded) == 4


def test_evaluation_prefetch_never_decodes_with_pillow(tmp_path, monkeypatch):
    """Pillow's JPEG decoder segfaulted on the prefetch thread while Paddle ran (issue 16)."""
    paths = []
    for i in range(5):
        paths.append(str(tmp_path / ("img%d.jpg" % i)))
        cv2.imwrite(paths[-1], np.full((32, 16, 3), 40 * i, np.uint8))

    def refuse(*_, **__):
        raise AssertionError("Pillow was asked to decode an image")

    monkeypatch.setattr(Image, "open", refuse)
    feats = evaluator.extract_features(lambda batch: batch.reshape(len(batch), -1)[:, :4], paths, (3, 32, 16),
                                        batch_size=2)
    assert feats.shape == (5, 4)


# ----- list files -------------------------------------------------------------------------------------------
LIST_FAULTS = {
    "non-numeric": ("image_id class_id super_class_id path\n1 one 1 a.jpg\n", "line 2: .*must be integers"),
    "duplicate image id": ("image_id class_id super_class_id path\n1 1 1 a.jpg\n1 2 1 b.jpg\n",
                           "line 3: image_id 1 already used on line 2"),
    "missing column": ("image_id class_id super_class_id path\n1 1 a.jpg\n", "line 2: expected 4 fields"),
    "no header": ("1 1 1 a.jpg\n", "line 1: expected the header"),
}


@pytest.mark.parametrize("fault", sorted(LIST_FAULTS))
def test_bad_list_file_is_refused_naming_file_and_line(tmp_path, fault):
    text, message = LIST_FAULTS[fault]
    path = tmp_path / "train.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"train\.txt %s" % message):
        listfile.read_list(str(path))


def test_list_file_with_bad_paths_fails_before_training_naming_them(synthetic_root, tmp_path):
    counts = listfile.build_market_lists(synthetic_root, str(tmp_path / "lists"))
    path = counts["train"]["path"]
    lines = open(path).read().splitlines()
    lines[3] = lines[3].rsplit(" ", 1)[0] + " no/such/file.jpg"
    lines[5] = lines[5].rsplit(" ", 1)[0] + " no/such/other.jpg"
    open(path, "w").write("\n".join(lines) + "\n")
    args = train_elem.parse_args(SMALL + ["--train_list", path, "--image_root", synthetic_root,
                                          "--model_save_dir", str(tmp_path / "m"), "--total_iter_num", "2"])
    with pytest.raises(images.BadImagesError, match=r"(?s)2 of \d+ images.*no/such/file\.jpg: file does not exist"
                                                    r".*no/such/other\.jpg"):
        build.build_trainer(args, train_elem.build_criterion, log=quiet)
    assert not os.path.exists(tmp_path / "m")


# ----- a dataset with bad images: refused before the first iteration, or skipped and counted ------------------
@pytest.fixture
def damaged_copy(synthetic_root, tmp_path):
    """The synthetic set with one corrupt training JPEG and one truncated gallery JPEG (symlinks elsewhere)."""
    root = tmp_path / "damaged"
    root.mkdir()
    for entry in os.listdir(synthetic_root):
        source = os.path.join(synthetic_root, entry)
        if os.path.isdir(source):
            (root / entry).mkdir()
            for name in os.listdir(source):
                os.symlink(os.path.join(source, name), root / entry / name)
        else:
            os.symlink(source, root / entry)
    train = sorted((root / "bounding_box_train").iterdir())[7]
    gallery = sorted(p for p in (root / "bounding_box_test").iterdir() if not p.name.startswith("-1"))[3]
    for path, data in ((train, b"\xff\xd8garbage"), (gallery, open(gallery, "rb").read()[:300])):
        path.unlink()
        path.write_bytes(data)
    return str(root), str(train), str(gallery)


def test_damaged_dataset_is_refused_before_the_first_iteration(damaged_copy, tmp_path):
    root, train, gallery = damaged_copy
    args = train_elem.parse_args(SMALL + ["--dataset_root", root, "--model_save_dir", str(tmp_path / "m"),
                                          "--total_iter_num", "2"])
    with pytest.raises(images.BadImagesError) as info:
        build.build_trainer(args, train_elem.build_criterion, log=quiet)
    assert [path for path, _ in info.value.bad] == [train, gallery]
    assert not os.path.exists(tmp_path / "m")


def test_damaged_dataset_trains_with_skip_and_counts_what_it_left_out(damaged_copy, tmp_path):
    root, train, gallery = damaged_copy
    args = train_elem.parse_args(SMALL + ["--dataset_root", root, "--model_save_dir", str(tmp_path / "m"),
                                          "--total_iter_num", "2", "--on_bad_image", "skip"])
    logs = []
    run = build.build_trainer(args, train_elem.build_criterion, log=logs.append)
    assert any(line.startswith("skipping 2 unreadable images") for line in logs), logs
    assert train not in run.stream.dataset.paths
    metrics = run.fit()
    assert metrics["num_gallery"] > 0


# ----- runs: never overwrite, never mix, never lose more than the last few minutes --------------------------
def elem_args(synthetic_root, save_dir, *extra):
    return train_elem.parse_args(SMALL + ["--synthetic_root", synthetic_root, "--model_save_dir", str(save_dir),
                                          "--test_iter_step", "100000"] + list(extra))


def build_run(synthetic_root, save_dir, *extra, log=quiet):
    run = build.build_trainer(elem_args(synthetic_root, save_dir, *extra), train_elem.build_criterion, log)
    run.evaluate_fn = None
    return run


def train(synthetic_root, save_dir, *extra, prepare=None):
    """Build, resume when ``--checkpoint`` is among the flags, and fit, as run_training does: in a fresh name
    scope, so that optimiser slot names (stored in checkpoints) do not depend on earlier runs."""
    import paddle

    with paddle.utils.unique_name.guard():
        run = build_run(synthetic_root, save_dir, *extra)
        if prepare:
            prepare(run)
        if "--checkpoint" in extra:
            run.resume(extra[list(extra).index("--checkpoint") + 1])
        run.fit()
    return run


def weights_of(layer):
    return {k: v.numpy().copy() for k, v in layer.state_dict().items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-6, err_msg=key)


def log_iterations(run_dir):
    return [json.loads(line).get("iter") for line in open(os.path.join(run_dir, rundir.LOG_FILE))]


MODEL = "MobileNetV3_small_x1_0"
RESUMABLE = ("--lr", "0.05", "--lr_strategy", "cosine", "--warmup_iter_num", "2", "--erase_prob", "0.5")


def test_rerun_into_the_same_directory_is_refused_until_overwrite(synthetic_root, tmp_path):
    train(synthetic_root, tmp_path, "--total_iter_num", "2", "--display_iter_step", "1")
    run_dir = os.path.join(tmp_path, MODEL)
    with pytest.raises(rundir.RunDirError, match=r"%s already holds a run \(checkpoint 2, latest, train_log.jsonl\).*"
                                                 r"--checkpoint .*latest.*--overwrite True" % run_dir):
        build_run(synthetic_root, tmp_path, "--total_iter_num", "3")
    train(synthetic_root, tmp_path, "--total_iter_num", "3", "--display_iter_step", "1", "--overwrite", "True")
    assert log_iterations(run_dir) == [1, 2, 3]          # the new run's log only
    assert rundir.checkpoints_in(run_dir) == [3]          # the old run's checkpoint 2 is gone
    train(synthetic_root, tmp_path / "other", "--total_iter_num", "1")
    with pytest.raises(rundir.RunDirError, match="already holds a run"):   # resuming another run there would mix
        build_run(synthetic_root, tmp_path, "--total_iter_num", "4", "--checkpoint",
              os.path.join(tmp_path, "other", MODEL, "latest"))


def test_second_concurrent_run_into_the_same_directory_is_refused(synthetic_root, tmp_path):
    import fcntl

    run_dir = tmp_path / MODEL
    run_dir.mkdir()
    with open(run_dir / rundir.LOCK_FILE, "w") as other:    # another process training there
        other.write("4242")
        other.flush()
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(rundir.RunDirError, match=r"another run \(pid 4242\) is writing to .*%s" % MODEL):
            build_run(synthetic_root, tmp_path, "--total_iter_num", "2")
        run = build_run(synthetic_root, tmp_path / "elsewhere", "--total_iter_num", "2")
        run.config.model_save_dir = str(tmp_path)             # it got past the early check while the dir was free
        with pytest.raises(rundir.RunDirError, match=r"another run \(pid 4242\)"):
            run.fit()
    assert os.listdir(run_dir) == [rundir.LOCK_FILE]          # nothing of the refused run


def test_failure_before_any_checkpoint_leaves_no_directory(synthetic_root, tmp_path, monkeypatch):
    save_dir = tmp_path / "new" / "models"
    run = build_run(synthetic_root, save_dir, "--total_iter_num", "4")
    monkeypatch.setattr(run.stream, "_make_batch", lambda *_: (_ for _ in ()).throw(MemoryError("out of memory")))
    with pytest.raises(MemoryError):
        run.fit()
    assert not os.path.exists(tmp_path / "new")


def test_nan_loss_stops_with_clear_message_and_keeps_last_good_checkpoint(synthetic_root, tmp_path, monkeypatch):
    run = build_run(synthetic_root, tmp_path, "--total_iter_num", "6", "--save_iter_step", "2")
    real_forward = run.criterion.forward

    def poisoned(before, after, labels, teacher_features=None):
        result = real_forward(before, after, labels, teacher_features)
        if run.iteration >= 3:
            result["loss"] = result["loss"] * float("nan")
        return result

    monkeypatch.setattr(run.criterion, "forward", poisoned)
    with pytest.raises(errors.TrainingDiverged, match=r"loss became nan at iteration 3.*Last good checkpoint: .*2"):
        run.fit()
    run_dir = os.path.join(tmp_path, MODEL)
    assert os.path.basename(os.path.realpath(os.path.join(run_dir, "latest"))) == "2"
    assert rundir.checkpoints_in(run_dir) == [2]
    state = checkpoint.read_training_state(os.path.join(run_dir, "latest"))
    assert state["trainer"]["iteration"] == 2
    assert all(np.isfinite(v.numpy()).all() for v in state["model"].values())
    assert "loss became nan at iteration 3" in open(os.path.join(run_dir, rundir.FAILED_FILE)).read()


def test_disk_full_during_a_checkpoint_keeps_the_previous_one_and_marks_the_run(synthetic_root, tmp_path,
                                                                                  monkeypatch):
    import errno

    import paddle

    run = build_run(synthetic_root, tmp_path, "--total_iter_num", "6", "--save_iter_step", "2")
    real_save, calls = paddle.save, []

    def save_until_the_disk_fills(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 5:   # the second checkpoint's optimizer file
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(paddle, "save", save_until_the_disk_fills)
    with pytest.raises(OSError, match="No space left on device"):
        run.fit()
    run_dir = os.path.join(tmp_path, MODEL)
    assert sorted(os.listdir(run_dir)) == sorted(["2", "latest", rundir.LOG_FILE, rundir.FAILED_FILE,
                                                  rundir.LOCK_FILE])  # no half-written checkpoint 4
    failed = open(os.path.join(run_dir, rundir.FAILED_FILE)).read()
    assert "OSError at iteration 4" in failed and "No space left on device" in failed
    assert "resume with --checkpoint %s" % os.path.join(run_dir, "2") in failed


def test_checkpoints_get_normal_permissions(synthetic_root, tmp_path):
    old = os.umask(0o022)
    try:
        train(synthetic_root, tmp_path, "--total_iter_num", "1")
    finally:
        os.umask(old)
    assert os.stat(os.path.join(tmp_path, MODEL, "1")).st_mode & 0o777 == 0o755


def test_a_long_run_also_saves_by_time(synthetic_root, tmp_path, monkeypatch):
    import itertools
    import time
    import types

    clock = itertools.count(0, 200)   # every reading of the trainer's clock moves 200 s on (only the trainer's)
    monkeypatch.setattr(trainer, "time", types.SimpleNamespace(time=lambda: next(clock), strftime=time.strftime,
                                                               gmtime=time.gmtime, perf_counter=time.perf_counter))
    train(synthetic_root, tmp_path, "--total_iter_num", "4", "--save_minutes", "10")
    saved = rundir.checkpoints_in(os.path.join(tmp_path, MODEL))
    assert 4 in saved and len(saved) >= 2, saved   # at least one save by time before the final one


def test_the_reported_training_speed_leaves_out_the_evaluations(synthetic_root, tmp_path, monkeypatch):
    import re
    import time
    import types

    now = [0.0]

    def clock():   # each reading of the trainer's clock moves 1 s on; an evaluation takes 1,000 s more
        now[0] += 1.0
        return now[0]

    def evaluate(net):
        now[0] += 1000.0
        return {"mAP": 0.5}

    monkeypatch.setattr(trainer, "time", types.SimpleNamespace(time=clock, strftime=time.strftime,
                                                               gmtime=time.gmtime, perf_counter=time.perf_counter))
    logs = []
    run = build.build_trainer(elem_args(synthetic_root, tmp_path, "--total_iter_num", "4", "--test_iter_step", "2"),
                              train_elem.build_criterion, logs.append)
    run.evaluate_fn = evaluate
    run.fit()
    line = next(line for line in logs if line.startswith("trained "))
    images, training, speed, evaluating = re.match(
        r"trained (\d+) images in ([\d.]+) s \(([\d.]+) images/s\), evaluated in ([\d.]+) s more", line).groups()
    # two evaluations (iterations 2 and 4), each 1,000 s and the 2 clock readings around it
    assert float(evaluating) == 2002.0 and float(training) < 100
    assert float(speed) == pytest.approx(int(images) / float(training), abs=0.05)


def test_sigterm_saves_and_the_resumed_run_ends_with_the_same_weights(synthetic_root, tmp_path):
    import signal

    straight = train(synthetic_root, tmp_path / "a", "--total_iter_num", "6", *RESUMABLE)

    def terminate_during_iteration_4(run):
        real_step = run.optimizer.step

        def step_then_terminate():
            real_step()
            if run.iteration == 3:   # SIGTERM arrives during iteration 4, between two saves
                os.kill(os.getpid(), signal.SIGTERM)

        run.optimizer.step = step_then_terminate

    with pytest.raises(errors.TrainingInterrupted, match="stopped by SIGTERM at iteration 4"):
        train(synthetic_root, tmp_path / "b", "--total_iter_num", "6", "--display_iter_step", "1", *RESUMABLE,
              prepare=terminate_during_iteration_4)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL   # the handler is gone again
    run_dir = os.path.join(tmp_path, "b", MODEL)
    latest = os.path.join(run_dir, "latest")
    assert os.path.basename(os.path.realpath(latest)) == "4"
    assert "stopped by SIGTERM at iteration 4" in open(os.path.join(run_dir, rundir.FAILED_FILE)).read()
    resumed = train(synthetic_root, tmp_path / "b", "--total_iter_num", "6", "--display_iter_step", "1",
                    "--checkpoint", latest, *RESUMABLE)
    assert_same_weights(weights_of(straight.net), weights_of(resumed.net))
    assert not os.path.exists(os.path.join(run_dir, rundir.FAILED_FILE))
    assert log_iterations(run_dir) == [1, 2, 3, 4, 4, 5, 6]   # the 4 in the middle is the "resumed" record


KILL_MID_SAVE = """
import os, signal, sys
sys.path.insert(0, {root!r})
import metric_learning
import paddle
from metric_learning import train_elem

real_save, calls = paddle.save, []

def save_then_die(obj, path, *args, **kwargs):
    real_save(obj, path, *args, **kwargs)
    calls.append(path)
    if len(calls) == 4:   # the second checkpoint has its weights on disk, nothing else
        os.kill(os.getpid(), signal.SIGKILL)

paddle.save = save_then_die
train_elem.main(sys.argv[1:])
"""


def test_sigkill_in_the_middle_of_a_checkpoint_resumes_from_the_previous_one(synthetic_root, tmp_path):
    """Every run in a fresh process, as a user's would be: the killed one has to be, and the runs it is compared
    with must compute alike (earlier tests in this process create Paddle Inference predictors, after which eager
    training here differs from a fresh process's by up to 1e-2 after a few steps)."""
    import subprocess
    import sys

    import paddle

    script = tmp_path / "kill_mid_save.py"
    script.write_text(KILL_MID_SAVE.format(root=ROOT))
    flags = SMALL + ["--synthetic_root", synthetic_root, "--total_iter_num", "6", "--save_iter_step", "3",
                     "--test_iter_step", "100000", "--display_iter_step", "1", *RESUMABLE]

    def run(program, save_dir, *extra):
        return subprocess.run([sys.executable, program, *flags, "--model_save_dir", str(save_dir), *extra],
                              capture_output=True, text=True, timeout=600)

    def final_weights(save_dir):
        state = paddle.load(os.path.join(save_dir, MODEL, "latest", checkpoint.MODEL_FILE))
        return {key: value.numpy() for key, value in state.items()}

    killed = run(str(script), tmp_path / "b")
    assert killed.returncode == -9, killed.stderr[-2000:]
    run_dir = os.path.join(tmp_path, "b", MODEL)
    assert os.path.basename(os.path.realpath(os.path.join(run_dir, "latest"))) == "3"
    assert any(name.startswith(".6.tmp-") for name in os.listdir(run_dir))   # the save it died in
    latest = os.path.join(run_dir, "latest")
    assert log_iterations(run_dir) == [1, 2, 3, 4, 5, 6]
    train_script = os.path.join(ROOT, "metric_learning", "train_elem.py")
    resumed = run(train_script, tmp_path / "b", "--checkpoint", latest)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # iterations 4-6 of the killed run are dropped; the script's run ends with its evaluation record at 6
    assert log_iterations(run_dir) == [1, 2, 3, 3, 4, 5, 6, 6]
    assert [name for name in os.listdir(run_dir) if name.startswith(".") and name != rundir.LOCK_FILE] == []
    straight = run(train_script, tmp_path / "a")
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert_same_weights(final_weights(tmp_path / "a"), final_weights(tmp_path / "b"))


# ----- checkpoints from elsewhere ------------------------------------------------------------------------------
class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_trainer_state_is_refused_naming_the_file(synthetic_root, tmp_path, monkeypatch):
    import pickle

    train(synthetic_root, tmp_path, "--total_iter_num", "1")
    state_file = os.path.join(tmp_path, MODEL, "1", checkpoint.STATE_FILE)
    assert checkpoint.read_trainer_state(state_file)["iteration"] == 1   # our own state reads back
    with open(state_file, "wb") as f:
        pickle.dump(RunsCode(), f)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match=r"%s is not a trainer state.*refusing posix.system"
                                                         % state_file):
        checkpoint.read_training_state(os.path.join(tmp_path, MODEL, "latest"))
    assert not os.path.exists(tmp_path / "pwned")


# ----- flags: checked first, before any data is generated, read or written -------------------------------------
def test_unknown_model_is_refused_before_the_synthetic_set_is_generated(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_elem.main(["--model", "NoSuchNet", "--synthetic_root", str(tmp_path / "synthetic")])
    assert "argument --model: unknown backbone 'NoSuchNet'; choose one of: ResNet50_vd" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "synthetic")


def test_missing_checkpoint_is_the_first_complaint_of_eval(capsys):
    from metric_learning import eval as eval_script

    with pytest.raises(SystemExit):
        eval_script.parse_args(["--checkpoint", "/nonexistent"])   # no dataset flag either
    error = capsys.readouterr().err.strip().splitlines()[-1]   # after the usage lines
    assert "error: argument --checkpoint: checkpoint /nonexistent does not exist" in error


def test_run_from_inside_the_package_writes_nothing_there(tmp_path, monkeypatch):
    from metric_learning import export_model, infer, train_pair

    (tmp_path / checkpoint.MODEL_FILE).write_bytes(b"")   # enough for --checkpoint's parse-time check
    monkeypatch.chdir(os.path.join(ROOT, "metric_learning"))
    defaults = [train_elem.parse_args([]).synthetic_root, train_elem.parse_args([]).model_save_dir,
                train_pair.parse_args([]).model_save_dir,
                infer.parse_args(["--inference_model", "m", "--image_dir", "x"]).output_dir,
                export_model.parse_args(["--checkpoint", str(tmp_path)]).output]
    assert defaults == [os.path.join(ROOT, *parts) for parts in (("data", "synthetic"), ("output",),
                                                                 ("save_pair_model",), ("features",),
                                                                 ("inference_model", "reid"))]
