"""The peer, torchreid's OSNet, exactly as its users run it: torchreid's own network code in PyTorch, and
the same network exported to ONNX for ONNX Runtime (how BoxMOT deploys it).

A benchmark-only extra, never imported by the package or the tests:

    pip install torch==2.13.0 && pip install --no-deps torchreid==0.2.5

Only torchreid's ``reid/models/osnet.py`` is loaded, from the installed package's files: importing the
``torchreid`` package itself pulls in its whole training stack (data loaders, TensorBoard, Cython metrics).
"""
import importlib.util
import os

INSTALL_HINT = "pip install torch==2.13.0 && pip install --no-deps torchreid==0.2.5"


def peer_available():
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "torchreid"))


def _osnet_module():
    spec = importlib.util.find_spec("torchreid")
    if spec is None or importlib.util.find_spec("torch") is None:
        raise SystemExit("the torchreid peer needs PyTorch and torchreid: " + INSTALL_HINT)
    path = os.path.join(spec.submodule_search_locations[0], "reid", "models", "osnet.py")
    module_spec = importlib.util.spec_from_file_location("torchreid_osnet", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def torchreid_name(model):
    """``OSNet_x0_25`` (our ``--model`` name) -> ``osnet_x0_25`` (torchreid's builder)."""
    name = model.lower()
    if not name.startswith("osnet_x"):
        raise ValueError("torchreid peer: %s is not an OSNet width (OSNet_x1_0 ... OSNet_x0_25)" % model)
    return name


def build_osnet(model, num_classes=751, weights=None):
    """torchreid's OSNet ``model`` (e.g. ``OSNet_x0_25``), loaded from a torchreid ``.pth`` if ``weights``.

    A classifier of another class count is dropped, as torchreid's own loader does.
    """
    import torch

    net = getattr(_osnet_module(), torchreid_name(model))(num_classes=num_classes, pretrained=False,
                                                          loss="softmax")
    if weights:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        state = {key[len("module."):] if key.startswith("module.") else key: value
                 for key, value in state.items()}
        own = net.state_dict()
        fitting = {key: value for key, value in state.items()
                   if key in own and tuple(own[key].shape) == tuple(value.shape)}
        missing = sorted(set(own) - set(fitting) - {"classifier.weight", "classifier.bias"})
        if missing:
            raise SystemExit("%s does not fit torchreid's %s: %d tensors missing or misfit, first %s"
                             % (weights, torchreid_name(model), len(missing), missing[0]))
        net.load_state_dict(fitting, strict=False)
    return net


def export_onnx(net, path, height, width):
    """Export ``net`` (eval mode: the fc-512 embedding) to ONNX with a dynamic batch axis, as torchreid users
    do with ``torch.onnx.export`` (TorchScript exporter, opset 17)."""
    import torch

    net.eval()
    torch.onnx.export(net, torch.zeros(1, 3, height, width), path, input_names=["images"],
                      output_names=["features"], dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}},
                      opset_version=17, dynamo=False)
    return path


class TorchEmbedder:
    """``embed(batch) -> [N, D]`` numpy, PyTorch eager, no autograd."""

    def __init__(self, net, threads):
        import torch

        torch.set_num_threads(threads)
        self.net = net.eval()

    def __call__(self, batch):
        import torch

        with torch.inference_mode():
            return self.net(torch.from_numpy(batch)).numpy()


class OnnxRuntimeEmbedder:
    """``embed(batch) -> [N, D]`` over an ONNX file, in the same ONNX Runtime session as our own exports."""

    def __init__(self, path, threads):
        from metric_learning.deploy.embedders import onnx_session

        self.session = onnx_session(path, threads=threads)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch):
        return self.session.run(None, {self.input_name: batch})[0]


def peer_runtimes(model, height, width, directory, threads, weights=None):
    """``{runtime: embed}`` for torchreid's ``model`` at one input size: PyTorch eager and ONNX Runtime."""
    net = build_osnet(model, weights=weights)
    onnx_path = export_onnx(net, os.path.join(directory, "torchreid_%s_%dx%d.onnx" % (model, height, width)),
                            height, width)
    return {"PyTorch eager": TorchEmbedder(net, threads), "ONNX Runtime": OnnxRuntimeEmbedder(onnx_path, threads)}
