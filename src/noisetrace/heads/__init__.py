"""Heads on frozen features (CLIP views, SPAM residual statistics), their late fusion, the
feature cache, fitting and leave-one-family-out validation."""
