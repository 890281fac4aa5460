"""What ONNX Runtime makes of an ONNX model: its operators as written and after ONNX Runtime's own graph optimisation.

    python benchmarks/onnx_graph.py output/export_osnet_market/reid.onnx /tmp/torchreid_osnet.onnx

For each file, one row as written and one as ONNX Runtime runs it (``ORT_ENABLE_ALL``, the level every session
here uses, saved with ``optimized_model_filepath``): the node count and the count of each operator in
``--ops``. Two exports of the same network differ in speed when they differ *after* optimisation, not before:
ONNX Runtime folds BatchNormalization and constant reshapes into the convolutions at load time, but every
``ReorderInput`` / ``ReorderOutput`` left is a copy between its blocked (NCHWc) layout and plain NCHW, made
around operators it has no blocked kernel for.
"""
import argparse
import collections
import os
import sys
import tempfile

DEFAULT_OPS = "Conv,BatchNormalization,GlobalAveragePool,ReduceMean,Sum,Add,Reshape,ReorderInput,ReorderOutput"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx_files", nargs="+", help="ONNX models")
    parser.add_argument("--ops", default=DEFAULT_OPS, help="comma-separated operators to count")
    args = parser.parse_args(argv)
    missing = [path for path in args.onnx_files if not os.path.isfile(path)]
    if missing:
        parser.error("no such ONNX file: %s" % ", ".join(missing))
    args.ops = [op for op in args.ops.split(",") if op]
    return args


def operator_counts(path):
    import onnx

    return collections.Counter(node.op_type for node in onnx.load(path).graph.node)


def optimised_copy(path, directory):
    """ONNX Runtime's optimised graph of ``path``, as a session on this machine builds it."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = os.path.join(directory, "optimised.onnx")
    options.log_severity_level = 3  # its warning that NCHWc graphs are machine-specific is the point here
    onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return options.optimized_model_filepath


def main(argv=None):
    args = parse_args(argv)
    print("| model | graph | nodes | %s |" % " | ".join(args.ops))
    print("|" + "---|" * (3 + len(args.ops)))
    for path in args.onnx_files:
        with tempfile.TemporaryDirectory() as directory:
            for graph, counts in (("as written", operator_counts(path)),
                                  ("as ONNX Runtime runs it", operator_counts(optimised_copy(path, directory)))):
                print("| %s | %s | %d | %s |" % (path, graph, sum(counts.values()),
                                                 " | ".join(str(counts[op]) for op in args.ops)))


if __name__ == "__main__":
    sys.exit(main())
