"""fit3dmm: fit a 3D Morphable Model to a photo with the Part Re-projection Distance Loss (PRDL)."""

__version__ = "0.1.0"
