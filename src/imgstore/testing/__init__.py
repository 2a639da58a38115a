"""Helpers for testing stores: barcode frames and a conformance suite every backend passes."""

from .barcode import make_frame, read_barcode

__all__ = ["make_frame", "read_barcode"]
