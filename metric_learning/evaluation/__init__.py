"""Evaluation: feature extraction, CMC / mAP / mINP and Recall@K, k-reciprocal re-ranking."""
