"""batchbanana: bulk image generation with Nano Banana (Gemini image) models."""

# The one place the version is written (pyproject.toml reads it from here); importing
# importlib.metadata to look it up instead costs ~25 ms at every start.
__version__ = "0.1.0"

__all__ = ["__version__"]
