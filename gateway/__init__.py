"""smsgw: carrier-facing SMPP 3.4 gateway for SMS marketing."""

__version__ = "0.1.0"
__all__ = ["__version__"]
