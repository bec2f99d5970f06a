"""murano: a self-hosted, Venice-compatible image-generation API on Hugging Face diffusers."""

__all__ = ["__version__"]

__version__ = "0.1.0"
