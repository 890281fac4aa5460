"""Losses: classification (softmax, ArcMargin), pair (triplet, quadruplet, EML, n-pairs) and distillation."""
