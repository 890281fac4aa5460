"""Data: dataset layouts (Market-1501, list files, the synthetic set), image decoding, transforms and samplers."""
