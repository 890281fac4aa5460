"""The MOTChallenge format (metric_learning.tracking.mot) on hand-written files, and DeepSORT on real MOT17 frames."""
import os
import time

import cv2
import numpy as np
import pytest

from metric_learning.tracking import deepsort, metrics as tracking_metrics, mot
from conftest import export_untrained_onnx

SEQINFO = "[Sequence]\nname=TINY\nimDir=img1\nframeRate=10\nseqLength=3\nimWidth=64\nimHeight=48\nimExt=.jpg\n"
# frame, id, left, top, width, height, consider flag, class, visibility
GT_ROWS = ["1,1,10,10,8,20,1,1,1.0",     # pedestrian: kept
           "2,1,11,10,8,20,1,1,0.9",
           "1,2,30,5,8,20,0,1,1.0",      # pedestrian the evaluation does not consider (flag 0): left out
           "2,3,40,20,10,10,0,3,1.0",    # a car: left out
           "3,4,50,20,6,18,0,7,1.0",     # a static person (distractor class 7): ignored
           "3,5,2,2,4,4,0,8,0.5"]        # a distractor (class 8): ignored
DET_ROWS = ["1,-1,10.5,10,8,20,0.99", "2,-1,11,10.5,8,19.5,0.2", "3,-1,50,20,6,18,0.7,-1,-1,-1"]


def write_sequence(directory, gt_rows=GT_ROWS, det_rows=DET_ROWS, frames=3, seqinfo=SEQINFO):
    os.makedirs(os.path.join(directory, "gt"))
    os.makedirs(os.path.join(directory, "det"))
    os.makedirs(os.path.join(directory, "img1"))
    with open(os.path.join(directory, "seqinfo.ini"), "w") as out:
        out.write(seqinfo)
    with open(os.path.join(directory, "gt", "gt.txt"), "w") as out:
        out.write("\n".join(gt_rows) + "\n")
    with open(os.path.join(directory, "det", "det.txt"), "w") as out:
        out.write("\n".join(det_rows) + "\n")
    for t in range(frames):
        cv2.imwrite(os.path.join(directory, "img1", "%06d.jpg" % (t + 1)), np.full((48, 64, 3), 40 * t, np.uint8))
    return directory


def test_a_sequence_keeps_considered_pedestrians_ignores_distractors_and_reads_detections(tmp_path):
    sequence = mot.MotSequence(write_sequence(str(tmp_path / "TINY")))
    assert (sequence.name, len(sequence), sequence.info.frame_rate, sequence.info.width) == ("TINY", 3, 10.0, 64)
    truth = [(ids.tolist(), boxes.tolist()) for ids, boxes in sequence.truth]
    assert truth == [([1], [[10, 10, 8, 20]]), ([1], [[11, 10, 8, 20]]), ([], [])]
    assert [boxes.tolist() for boxes in sequence.ignored] == [[], [], [[50, 20, 6, 18], [2, 2, 4, 4]]]
    assert sequence.detections(1).tolist() == [[11, 10.5, 8, 19.5]]
    detections = mot.read_detections(str(tmp_path / "TINY" / "det" / "det.txt"), 3)
    assert [scores.tolist() for _, scores in detections] == [[pytest.approx(0.99)], [pytest.approx(0.2)],
                                                             [pytest.approx(0.7)]]
    assert sequence.frame(2).shape == (48, 64, 3) and int(sequence.frame(2).mean()) == 80
    confident = mot.MotSequence(str(tmp_path / "TINY"), min_score=0.5)
    assert [len(confident.detections(t)) for t in range(3)] == [1, 0, 1]


def test_a_track_on_a_distractor_is_neither_credited_nor_a_false_positive(tmp_path):
    sequence = mot.MotSequence(write_sequence(str(tmp_path / "TINY")))
    # track 7 follows pedestrian 1 in frames 1-2 and sits on the static person in frame 3
    predictions = [([7], [[10, 10, 8, 20]]), ([7], [[11, 10, 8, 20]]), ([7], [[50, 20, 6, 18]])]
    scores = tracking_metrics.score_tracking(sequence.truth, predictions, ignored=sequence.ignored)
    assert (scores.num_gt, scores.num_pred, scores.false_positives, scores.misses) == (2, 2, 0, 0)
    assert scores.mota == 1.0 and scores.idf1 == 1.0


def test_results_files_round_trip(tmp_path):
    predictions = [(np.array([3, 1]), np.array([[1.25, 2.5, 10.0, 20.75], [-4.0, 0.0, 7.5, 9.0]])),
                   (np.zeros(0, np.int64), np.zeros((0, 4))),
                   (np.array([3]), np.array([[2.0, 3.0, 10.0, 21.0]]))]
    path = str(tmp_path / "out" / "TINY.txt")
    mot.write_results(path, predictions)
    assert open(path).read().splitlines()[0] == "1,3,1.25,2.50,10.00,20.75,1,-1,-1,-1"
    again = mot.read_results(path, 3)
    for (ids, boxes), (ids_again, boxes_again) in zip(predictions, again):
        assert ids_again.tolist() == list(ids)
        np.testing.assert_array_equal(boxes_again, np.asarray(boxes).reshape(-1, 4))


@pytest.mark.parametrize("row,message", [
    ("2,1,11,10,8", r"gt\.txt line 3: expected at least 8 comma-separated numbers, got 5"),
    ("2,1,11,ten,8,20,1,1,1", r"gt\.txt line 3: not a number in '2,1,11,ten,8,20,1,1,1'"),
    ("4,1,11,10,8,20,1,1,1", r"gt\.txt line 3: frame 4 is not one of the sequence's frames 1-3"),
    ("2,1,11,10,0,20,1,1,1", r"gt\.txt line 3: the box needs a positive width and height, got 0 x 20"),
    ("1,1,11,10,8,20,1,1,1", r"gt\.txt: frame 1 lists id 1 more than once")])
def test_a_bad_ground_truth_row_names_the_file_and_line(tmp_path, row, message):
    rows = GT_ROWS[:2] + [row] + GT_ROWS[2:]
    with pytest.raises(mot.MotFormatError, match=message):
        mot.MotSequence(write_sequence(str(tmp_path / "TINY"), gt_rows=rows))


def test_bad_seqinfo_detections_and_missing_frames_are_named(tmp_path):
    with pytest.raises(mot.MotFormatError, match=r"det\.txt line 2: non-finite value"):
        mot.MotSequence(write_sequence(str(tmp_path / "a"), det_rows=[DET_ROWS[0], "2,-1,nan,1,2,3,0.5"]))
    with pytest.raises(mot.MotFormatError, match=r"seqinfo\.ini: seqLength is 3 but 1 frame files are missing, "
                                                 r"the first .*000003\.jpg"):
        mot.MotSequence(write_sequence(str(tmp_path / "b"), frames=2))
    with pytest.raises(mot.MotFormatError, match=r"seqinfo\.ini: \[Sequence\] has no frameRate"):
        mot.MotSequence(write_sequence(str(tmp_path / "c"), seqinfo=SEQINFO.replace("frameRate=10\n", "")))
    with pytest.raises(FileNotFoundError, match="holds no MOTChallenge sequence"):
        mot.find_sequences(str(tmp_path / "a" / "img1"))


# ------------------------------------------------------------------------------------ real MOT17 frames


@pytest.fixture(scope="module")
def untrained_onnx(tmp_path_factory):
    """An exported untrained MobileNetV3-small ReIDNet (64x32 input, 16-d) and its ONNX: plumbing, not accuracy."""
    return export_untrained_onnx(tmp_path_factory.mktemp("mot_embedder"), "MobileNetV3_small_x1_0", (3, 64, 32),
                                 embedding_size=16)


def test_deepsort_tracks_a_real_mot17_sequence_and_motmetrics_scores_it(mot17_mini_root, untrained_onnx, tmp_path):
    from PIL import Image

    from metric_learning.deploy.extractor import Extractor

    sequence = mot.MotSequence(os.path.join(mot17_mini_root, "MOT17-05-FRCNN"))
    # 6 frames of 640x480, 26 public detections, 45 boxes of 9 considered pedestrians (the dataset's README)
    assert len(sequence) == 6 and sum(len(sequence.detections(t)) for t in range(6)) == 26
    assert sum(len(ids) for ids, _ in sequence.truth) == 45 and len(np.unique(np.concatenate(
        [ids for ids, _ in sequence.truth]))) == 9
    started = time.perf_counter()
    evaluation = deepsort.evaluate_sequences([sequence], Extractor(untrained_onnx, threads=1), str(tmp_path))
    assert time.perf_counter() - started < 60
    run, scores = evaluation.runs["MOT17-05-FRCNN"], evaluation.scores["MOT17-05-FRCNN"]
    # DeepSORT confirms a track on its third hit (n_init 3), so frames 1-2 report nothing and later ones do
    assert [len(ids) for ids, _ in run.predictions[:2]] == [0, 0]
    assert all(len(ids) > 0 for ids, _ in run.predictions[2:])
    assert scores.num_gt == 45 and scores.num_pred == sum(len(ids) for ids, _ in run.predictions)
    # Measured: MOTA 0.333, IDF1 0.500 (15 matched boxes out of 45, no false positive, no switch); with frames 1-2
    # empty at most 30 of the 45 boxes can be matched, so MOTA <= 0.67. The floors allow a few boxes fewer.
    assert 0.25 <= scores.mota <= 30 / 45 and 0.4 <= scores.idf1 <= 1.0 and scores.id_switches == 0
    assert 0.7 < scores.motp <= 1.0
    assert evaluation.scores[tracking_metrics.OVERALL] == scores     # one sequence: overall is that sequence
    # the results file reads back as the run's tracks, to the 0.01 px written
    again = mot.read_results(str(tmp_path / "MOT17-05-FRCNN.txt"), len(sequence))
    for (ids, boxes), (ids_again, boxes_again) in zip(run.predictions, again):
        assert sorted(ids_again.tolist()) == sorted(ids.tolist())
        order, order_again = np.argsort(ids), np.argsort(ids_again)
        np.testing.assert_allclose(boxes_again[order_again], boxes[order], atol=0.005)
    with Image.open(str(tmp_path / "MOT17-05-FRCNN.gif")) as gif:
        assert gif.n_frames == 6 and gif.size == (480, 360)


def test_the_benchmark_command_writes_results_gifs_and_a_table_for_ours_and_a_peer(mot17_mini_root, untrained_onnx,
                                                                                  tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "tracking_benchmark", os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "tracking.py"))
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    output = str(tmp_path / "mot")
    assert benchmark.main(["--mot_root", mot17_mini_root, "--sequences", "MOT17-09-FRCNN", "--embedders",
                           "none,ours,peer", "--inference_model", untrained_onnx, "--peer_onnx", untrained_onnx,
                           "--output_dir", output, "--gif_width", "160"]) == 0
    for folder in ("none", "ours", "peer"):
        assert sorted(os.listdir(os.path.join(output, folder))) == ["MOT17-09-FRCNN.gif", "MOT17-09-FRCNN.txt"]
    table = open(os.path.join(output, "scores.md")).read().splitlines()
    overall = [line.split(" | ") for line in table if "| OVERALL |" in line]
    assert len(overall) == 6              # none, ours, peer; in the full table and again in the summary
    # the same model as ours and as peer embeds the same detections alike: the same scores (frames/s aside)
    ours, peer = [cells for cells in overall[:3] if cells[0].startswith("| ours") or cells[0].startswith("| peer")]
    assert ours[2:-1] == peer[2:-1] and ours[1] == "0.20"
    assert "1 sequences, 4 frames, 16 public detections, 24 ground-truth boxes" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--mot_root", mot17_mini_root, "--peer_onnx", str(tmp_path / "missing.onnx")])
    with pytest.raises(ValueError, match="--sequences: MOT17-99 not under"):
        benchmark.main(["--mot_root", mot17_mini_root, "--sequences", "MOT17-99", "--embedders", "none"])
