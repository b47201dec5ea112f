"""audiokit: streaming speech and audio processing on a plain CPU."""
__version__ = "0.1.0"
