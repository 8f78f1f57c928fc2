"""Evidence: local score maps, Integrated Gradients, noise traces and per-file reports.

Heavy optional dependencies (captum, matplotlib) are imported only when a function needs them.
"""

from noisetrace.explain.heatmap import colormap, local_logit_map, overlay, probability_map
from noisetrace.explain.ig import IGResult, integrated_gradients, make_baseline
from noisetrace.explain.intensity import IntensityAnalysis, run_intensity_analysis
from noisetrace.explain.report import Explanation, explain_array, explain_file, top_regions
from noisetrace.explain.traces import NoiseTraces, load_siamese, noise_traces, srm_maps

__all__ = [
    "Explanation",
    "IGResult",
    "IntensityAnalysis",
    "NoiseTraces",
    "colormap",
    "explain_array",
    "explain_file",
    "integrated_gradients",
    "load_siamese",
    "local_logit_map",
    "make_baseline",
    "noise_traces",
    "overlay",
    "probability_map",
    "run_intensity_analysis",
    "srm_maps",
    "top_regions",
]
