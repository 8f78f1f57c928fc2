"""Noise residual extractors: fixed SRM high-pass filters (and DnCNN noise, see models)."""

from noisetrace.residuals.srm import SRM_KERNELS, SRMFilter, srm_residual, srm_weight

__all__ = ["SRM_KERNELS", "SRMFilter", "srm_residual", "srm_weight"]
