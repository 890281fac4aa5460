"""Deployment: export to Paddle Inference / ONNX, the exported-model runtimes, preprocessing, gallery search."""
