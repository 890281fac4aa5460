"""List files in the classic metric-learning format (Stanford Online Products' ``Ebay_train.txt``)::

    image_id class_id super_class_id path
    1 1 1 gt_bbox/0001_c1s1_001051_00.jpg
    2 1 1 gt_bbox/0001_c1s1_002301_00.jpg
    ...

Conventions of the files this module writes:

- ``image_id``: dense from 1, in file order (as in SOP);
- ``class_id``: dense from 1 *within each file*, in pid order;
- ``super_class_id``: always 1 (one super-class, "person"; SOP uses it for the product category);
- ``path``: relative to the dataset root, with ``/`` separators.

Reading accepts any ids (non-negative ints, unique image ids) and turns class ids into dense 0-based labels.

Market-1501 builder: :func:`build_market_lists` reads ``gt_bbox`` (25,259 hand-drawn boxes of all 1,501
ids) and splits it

- ``split='identity'`` (default): by identity, the last ``num_test_ids`` pids (default half, rounded down:
  751 train / 750 test ids like Market's own split sizes) go to test, so no test identity is trained on;
- ``split='tail'``: the old notebook's split, the last ``num_test`` images by file name (default 1,014)
  go to test. On Market-1501 those 1,014 images are exactly the 80 ids 1422-1501 (24,245 train images /
  1,421 ids), but another ``num_test`` can cut an identity in two; it exists to reproduce old numbers.
"""
import collections
import os

import numpy as np

from metric_learning.data import market

HEADER = ("image_id", "class_id", "super_class_id", "path")
SUPER_CLASS_ID = 1
DEFAULT_NUM_TEST_IMAGES = 1014

ListRecord = collections.namedtuple("ListRecord", HEADER)
ListRecord.__doc__ = "One list-file line; ``path`` is relative to the dataset root."


def _parse_line(line, list_path, line_number):
    fields = line.split(None, 3)
    if len(fields) != 4:
        raise ValueError("%s line %d: expected 4 fields '%s', got %r"
                         % (list_path, line_number, " ".join(HEADER), line))
    try:
        ids = [int(v) for v in fields[:3]]
    except ValueError:
        raise ValueError("%s line %d: image_id, class_id and super_class_id must be integers, got %r"
                         % (list_path, line_number, line)) from None
    if min(ids) < 0:
        raise ValueError("%s line %d: ids must be non-negative, got %r" % (list_path, line_number, line))
    return ListRecord(ids[0], ids[1], ids[2], fields[3])


def read_list(list_path):
    """Read and validate a list file; returns a list of :class:`ListRecord` in file order.

    Blank lines are skipped. An empty file, a wrong header, a malformed line or a repeated image id raises
    ValueError naming the file and the line number.
    """
    records, seen = [], {}
    with open(list_path, encoding="utf-8-sig") as f:  # -sig: tolerate a byte-order mark from Windows editors
        header = f.readline()
        if not header.strip():
            raise ValueError("%s is empty: expected the header line '%s'" % (list_path, " ".join(HEADER)))
        if tuple(header.split()) != HEADER:
            raise ValueError("%s line 1: expected the header '%s', got %r"
                             % (list_path, " ".join(HEADER), header.rstrip("\n")))
        for line_number, line in enumerate(f, start=2):
            line = line.strip()
            if not line:
                continue
            record = _parse_line(line, list_path, line_number)
            if record.image_id in seen:
                raise ValueError("%s line %d: image_id %d already used on line %d"
                                 % (list_path, line_number, record.image_id, seen[record.image_id]))
            seen[record.image_id] = line_number
            records.append(record)
    if not records:
        raise ValueError("%s has a header but no records" % list_path)
    return records


def write_list(list_path, records):
    """Write records with the header line; creates the parent folder."""
    parent = os.path.dirname(os.path.abspath(list_path))
    os.makedirs(parent, exist_ok=True)
    with open(list_path, "w", encoding="utf-8") as f:
        f.write(" ".join(HEADER) + "\n")
        for r in records:
            f.write("%d %d %d %s\n" % (r.image_id, r.class_id, r.super_class_id, r.path))


def records_to_paths_labels(records, root):
    """``(absolute paths, labels)`` for a dataset: labels are int64, dense from 0 in class-id order."""
    root = os.path.abspath(root)
    paths = [os.path.join(root, r.path) for r in records]
    class_ids = np.fromiter((r.class_id for r in records), dtype=np.int64, count=len(records))
    _, labels = np.unique(class_ids, return_inverse=True)
    return paths, labels.astype(np.int64)


def make_records(samples, root):
    """Records for ``samples`` (:class:`~metric_learning.data.market.ReIDSample`), in the given order.

    Image ids count from 1; class ids are dense from 1 in pid order; paths are made relative to ``root``.
    """
    labels, _ = market.relabel(samples)
    root = os.path.abspath(root)
    return [ListRecord(i + 1, int(label) + 1, SUPER_CLASS_ID, os.path.relpath(s.path, root).replace(os.sep, "/"))
            for i, (s, label) in enumerate(zip(samples, labels))]


def split_by_identity(samples, num_test_ids=None):
    """``(train, test)``: the ``num_test_ids`` largest pids go to test (default: half, rounded down)."""
    pids = sorted({s.pid for s in samples})
    if num_test_ids is None:
        num_test_ids = len(pids) // 2
    if not 0 < num_test_ids < len(pids):
        raise ValueError("num_test_ids must be between 1 and %d (the number of ids - 1), got %d"
                         % (len(pids) - 1, num_test_ids))
    test_pids = set(pids[len(pids) - num_test_ids:])
    train = [s for s in samples if s.pid not in test_pids]
    test = [s for s in samples if s.pid in test_pids]
    return train, test


def split_tail(samples, num_test=DEFAULT_NUM_TEST_IMAGES):
    """``(train, test)``: the last ``num_test`` samples by file name go to test (the old notebook's split)."""
    if not 0 < num_test < len(samples):
        raise ValueError("num_test must be between 1 and %d (the number of images - 1), got %d"
                         % (len(samples) - 1, num_test))
    ordered = sorted(samples, key=lambda s: os.path.basename(s.path))
    return ordered[:-num_test], ordered[-num_test:]


def build_market_lists(root, output_dir, split="identity", num_test_ids=None, num_test=DEFAULT_NUM_TEST_IMAGES,
                       folder="gt_bbox", pattern="market1501"):
    """Write ``train.txt`` and ``test.txt`` for ``root/folder`` into ``output_dir``.

    Junk (pid -1) and distractor (pid 0) images are left out: they have no identity to learn.
    Returns ``{'all': {'images': n, 'classes': k}, 'train': {'images': n, 'classes': k, 'path': ...}, 'test': {...}}``.
    """
    samples = [s for s in market.load_folder(os.path.join(root, folder), pattern) if s.pid > market.DISTRACTOR_PID]
    if not samples:
        raise ValueError("no labelled images in %r" % os.path.join(root, folder))
    if split == "identity":
        train, test = split_by_identity(samples, num_test_ids)
    elif split == "tail":
        train, test = split_tail(samples, num_test)
    else:
        raise ValueError("unknown split %r: use 'identity' or 'tail'" % split)
    counts = {"all": {"images": len(samples), "classes": len({s.pid for s in samples})}}
    for name, part in (("train", train), ("test", test)):
        records = make_records(part, root)
        list_path = os.path.join(output_dir, name + ".txt")
        write_list(list_path, records)
        counts[name] = {"images": len(records), "classes": len({r.class_id for r in records}), "path": list_path}
    return counts
