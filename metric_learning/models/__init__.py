"""Models: PaddleClas backbones and OSNet, the ReID network, weights loading and conversion, checkpoints."""
