"""Tracking: DeepSORT with our embeddings on rendered videos, and its scores (IDF1, ID switches)."""
