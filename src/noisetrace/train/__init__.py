"""Training: the one loop, datasets of patches, model cards."""
