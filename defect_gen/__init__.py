"""Defect-Gen: two-stage diffusion generator of defective images with pixel-level multi-class masks."""

__version__ = "0.1.0"
