"""Compatibility module: the reference's ``imgstore.util`` names."""

from ._motif import read_motif_h5_attrs as motif_extra_data_h5_attrs
from .imageops import FourCC, ImageCodecProcessor, ensure_color, ensure_grayscale
from .ondisk import JsonCustomEncoder

__all__ = [
    "FourCC",
    "ImageCodecProcessor",
    "JsonCustomEncoder",
    "ensure_color",
    "ensure_grayscale",
    "motif_extra_data_h5_attrs",
]
