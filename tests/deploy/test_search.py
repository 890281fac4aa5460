"""Gallery search (faiss exact and IVF), the top-k picture and the search_gallery script."""
import os

import cv2
import numpy as np
import pytest

from metric_learning import search_gallery
from metric_learning.deploy import search
from metric_learning.evaluation import metrics

GREEN, RED, WHITE = list(search.SAME_ID_BGR), list(search.OTHER_ID_BGR), list(search.BACKGROUND_BGR)


def random_unit(rows, dim, seed):
    return metrics.l2_normalize(np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32))


def test_exact_search_is_the_numpy_ranking():
    gallery, queries = random_unit(1000, 32, 0), random_unit(50, 32, 1)
    scores, indices = search.GallerySearch(gallery).search(queries, 10)
    similarity = queries @ gallery.T
    expected = np.argsort(-similarity, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(similarity, expected, axis=1), atol=1e-5)
    assert indices.dtype == np.int64 and scores.shape == (50, 10)


def test_ivf_is_exact_when_it_scans_every_list_and_approximate_when_it_scans_one():
    gallery, queries = random_unit(4000, 16, 2), random_unit(100, 16, 3)
    exact = search.GallerySearch(gallery, index="exact").search(queries, 10)[1]
    ivf = search.GallerySearch(gallery, index="ivf", nlist=40, nprobe=40)
    assert (ivf.kind, ivf.nlist, ivf.nprobe) == ("ivf", 40, 40)
    np.testing.assert_array_equal(ivf.search(queries, 10)[1], exact)
    ivf.nprobe = 1
    found = ivf.search(queries, 10)[1]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found.tolist(), exact.tolist())])
    assert recall < 0.9          # one list of 40 misses many true neighbours on unstructured data


def test_auto_index_switches_to_ivf_at_the_threshold():
    gallery = random_unit(2500, 8, 4)
    assert search.GallerySearch(gallery[:2499], ivf_threshold=2500).kind == "exact"
    ivf = search.GallerySearch(gallery, ivf_threshold=2500)
    assert (ivf.kind, ivf.nlist, ivf.nprobe, ivf.size) == ("ivf", 200, 32, 2500)     # nlist = 4 * sqrt(2500)


def test_search_errors_say_what_is_wrong():
    gallery = random_unit(20, 8, 5)
    index = search.GallerySearch(gallery)
    with pytest.raises(ValueError, match="query features have 4 dimensions but the gallery has 8"):
        index.search(random_unit(2, 4, 6), 3)
    with pytest.raises(ValueError, match=r"k must be between 1 and the gallery size \(20 images\), got 21"):
        index.search(gallery[:2], 21)
    with pytest.raises(ValueError, match="got 0"):
        index.search(gallery[:2], 0)
    with pytest.raises(ValueError, match="must be L2-normalised .* 1 of 20 rows are not .row 3 has norm 2"):
        search.GallerySearch(np.concatenate([gallery[:3], 2 * gallery[3:4], gallery[4:]]))
    with pytest.raises(ValueError, match="index must be one of auto, exact, ivf"):
        search.GallerySearch(gallery, index="hnsw")
    with pytest.raises(ValueError, match=r"nprobe must be between 1 and nlist \(4\), got 5"):
        search.GallerySearch(gallery, index="ivf", nlist=4, nprobe=5)
    with pytest.raises(ValueError, match="nlist must be between 1 and the gallery size 20, got 21"):
        search.GallerySearch(gallery, index="ivf", nlist=21)
    with pytest.raises(ValueError, match="nprobe applies to the ivf index; this one is exact"):
        index.nprobe = 2


# ------------------------------------------------------------------------------------------ the picture

# Gallery rows (4-d): g0 = e2, g1 at 10 degrees from e1 towards e2, g2 = e1, g3 at 30 degrees, g4 = -e1, g5 = e3.
# Query 0 = e1 ranks g2 (1.0), g1 (cos 10 = 0.985), g3 (cos 30 = 0.866). Query 1 = (e3 + 0.1 e2) / |.| ranks
# g5 (0.995), g0 (0.0995), g3 (0.0995 sin 30 = 0.0497).
GALLERY = np.array([[0, 1, 0, 0], [np.cos(np.radians(10)), np.sin(np.radians(10)), 0, 0], [1, 0, 0, 0],
                    [np.cos(np.radians(30)), np.sin(np.radians(30)), 0, 0], [-1, 0, 0, 0], [0, 0, 1, 0]], np.float32)
QUERIES = metrics.l2_normalize(np.array([[1, 0, 0, 0], [0, 0.1, 1, 0]], np.float32))
QUERY_PIDS, GALLERY_PIDS = np.array([1, 2]), np.array([2, 1, 1, 3, 1, 2])
GALLERY_GREY = [10, 40, 70, 100, 130, 160]     # gallery image i is filled with this grey level


def test_hand_built_rankings():
    scores, indices = search.GallerySearch(GALLERY).search(QUERIES, 3)
    assert indices.tolist() == [[2, 1, 3], [5, 0, 3]]
    np.testing.assert_allclose(scores, [[1.0, 0.98481, 0.86603], [0.99504, 0.09950, 0.04975]], atol=1e-5)


def write_images(folder, names, fills, size_hw=(100, 50)):
    os.makedirs(folder, exist_ok=True)
    for name, fill in zip(names, fills):
        cv2.imwrite(os.path.join(folder, name), np.full(size_hw + (3,), fill, np.uint8))
    return [os.path.join(folder, name) for name in names]


def test_grid_size_frames_and_cells(tmp_path):
    queries = write_images(str(tmp_path), ["q0.png", "q1.png"], [(255, 0, 0), (0, 255, 255)])
    gallery = write_images(str(tmp_path), ["g%d.png" % i for i in range(6)], GALLERY_GREY)
    scores, indices = search.GallerySearch(GALLERY).search(QUERIES, 3)
    out = str(tmp_path / "grid" / "top3.png")
    # cells 128x64 + 4 px border = 136x72; columns at x 0 (query), 88 (0 + 72 + gap 16), 164, 240 (+ 72 + 4);
    # width 240 + 72 = 312; rows 136 + 14 caption = 150 high, two rows = 300
    assert search.save_topk_grid(out, queries, gallery, indices, QUERY_PIDS, GALLERY_PIDS, scores) == (300, 312)
    grid = cv2.imread(out)
    assert grid.shape == (300, 312, 3)
    columns = [0, 88, 164, 240]
    expected_frames = [[GREEN, GREEN, RED], [GREEN, GREEN, RED]]      # ids of g2 g1 g3 vs 1; g5 g0 g3 vs 2
    for row, top in enumerate((0, 150)):
        assert grid[top + 1, columns[0] + 1].tolist() == WHITE            # the query has no frame
        assert grid[top + 60, columns[0] + 30].tolist() == [[255, 0, 0], [0, 255, 255]][row]
        for j, left in enumerate(columns[1:]):
            assert grid[top + 1, left + 1].tolist() == expected_frames[row][j]
            assert grid[top + 135, left + 71].tolist() == expected_frames[row][j]
            assert grid[top + 60, left + 30].tolist() == [GALLERY_GREY[indices[row, j]]] * 3
    assert (grid[0:136, 72:88] == 255).all()                              # the gap after the query


def test_grid_without_ids_draws_no_frames(tmp_path):
    gallery = write_images(str(tmp_path), ["g%d.png" % i for i in range(6)], GALLERY_GREY)
    images = [np.full((64, 32, 3), 200, np.uint8)]                        # queries may be images in memory
    out = str(tmp_path / "plain.png")
    assert search.save_topk_grid(out, images, gallery, [[2, 1]]) == (150, 236)
    grid = cv2.imread(out)
    assert grid[1, 89].tolist() == WHITE and grid[1, 165].tolist() == WHITE
    assert grid[60, 118].tolist() == [70] * 3                                 # g2 in the first result cell
    with pytest.raises(ValueError, match="give both query_pids and gallery_pids"):
        search.save_topk_grid(out, images, gallery, [[2, 1]], query_pids=[1])
    with pytest.raises(ValueError, match="cannot read gallery image: .*missing.png.: file does not exist"):
        search.save_topk_grid(out, images, [str(tmp_path / "missing.png")], [[0]])


# ------------------------------------------------------------------------------------------- the script


def market_names(pids, cams):
    return ["%04d_c%ds1_%06d_01.jpg" % (pid, cam, i) for i, (pid, cam) in enumerate(zip(pids, cams))]


def test_search_gallery_script_writes_the_grid(tmp_path, capsys):
    root = tmp_path / "market"
    q_names, g_names = market_names(QUERY_PIDS, [1, 2]), market_names(GALLERY_PIDS, [2, 1, 3, 4, 5, 6])
    write_images(str(root / "query"), q_names, [(255, 0, 0), (0, 255, 255)])
    write_images(str(root / "bounding_box_test"), g_names, GALLERY_GREY)
    for split, feats, names in (("query", QUERIES, q_names), ("gallery", GALLERY, g_names)):
        np.save(str(tmp_path / (split + ".npy")), feats)
        (tmp_path / (split + ".txt")).write_text("".join(n + "\n" for n in names))
    out = str(tmp_path / "out" / "grid.png")
    files = ["--query_feats", str(tmp_path / "query.npy"), "--query_list", str(tmp_path / "query.txt"),
             "--gallery_feats", str(tmp_path / "gallery.npy"), "--gallery_list", str(tmp_path / "gallery.txt")]
    search_gallery.main(files + ["--dataset_root", str(root), "--queries", "1", "--k", "2", "--output", out])
    printed = capsys.readouterr().out
    assert "%s: %s 0.995  %s 0.100" % (q_names[1], g_names[5], g_names[0]) in printed
    grid = cv2.imread(out)
    assert grid.shape == (150, 236, 3) and grid[1, 89].tolist() == GREEN and grid[60, 118].tolist() == [160] * 3
    with pytest.raises(ValueError, match=r"--queries: rows must be between 0 and 1, got \[5\]"):
        search_gallery.main(files + ["--dataset_root", str(root), "--queries", "5", "--output", out])
    with pytest.raises(FileNotFoundError, match="nowhere.npy"):
        search_gallery.main(["--query_feats", "nowhere.npy"] + files[2:] + ["--output", out])
