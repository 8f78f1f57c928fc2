"""Evidence: local score maps and overlays (Integrated Gradients and noise traces to come)."""

from noisetrace.explain.heatmap import colormap, local_logit_map, overlay, probability_map

__all__ = ["colormap", "local_logit_map", "overlay", "probability_map"]
