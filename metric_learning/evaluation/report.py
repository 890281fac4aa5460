"""The console tables of an evaluation: Rank-k / mAP / mINP (with a per-camera breakdown), or Recall@K."""

LEAVE_ONE_OUT_NOTE = (
    "note: leave-one-out Recall@K lets each image find the other shots of its own person, including those from "
    "the same camera moments apart, so it overstates re-identification accuracy: on Market-1501 with OSNet x0.25 "
    "features, leave-one-out Recall@1 is 97.8 where the standard Rank-1 is 91.5. Use --dataset_root (query vs "
    "gallery with camera filtering) for the standard numbers.")


def _percent(value):
    return "%8s" % "-" if value is None else "%8.2f" % (100.0 * value)


def format_ranking(result, ranks):
    """The console table of a protocol evaluation (percentages)."""
    rerank = result.get("rerank")
    lines = ["distance: %s; re-ranking: %s" % (result["metric"], "off" if not rerank else
                                                "k1=%(k1)d k2=%(k2)d lambda=%(lambda_value)g" % rerank),
             "queries: %d (%d scored, %d without a true match in another camera); gallery: %d images (junk excluded)"
             % (result["num_query"], result["num_valid_query"], result["num_skipped_query"], result["num_gallery"])]
    columns = ["Rank-%d" % k for k in ranks] + ["mAP", "mINP"]
    keys = ["rank%d" % k for k in ranks] + ["mAP", "mINP"]
    rows = [("all", result)] + sorted(result.get("per_camera", {}).items())
    lines.append("%-10s%8s" % ("query cam", "scored") + "".join("%8s" % c for c in columns))
    for name, row in rows:
        lines.append("%-10s%8d" % (name, row["num_valid_query"]) + "".join(_percent(row[k]) for k in keys))
    return "\n".join(lines)


def format_recall(result, ranks):
    lines = ["test_img_num %d, test_recall %.5f" % (result["num_images"], result["test_recall"]),
             "leave-one-out (%s): " % result["metric"]
             + "  ".join("Recall@%d %.2f" % (k, 100 * result["recall@%d" % k]) for k in ranks),
             LEAVE_ONE_OUT_NOTE]
    return "\n".join(lines)
