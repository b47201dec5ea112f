"""audiokit: streaming speech and audio processing on a plain CPU.

``audiokit.enhance``, ``audiokit.enhance_file``, ``audiokit.separate``, ``audiokit.separate_file``,
``audiokit.classify``, ``audiokit.spot``, ``audiokit.iter_spots``, ``audiokit.dance``, ``audiokit.dance_file`` and
``audiokit.load_model`` (see :mod:`audiokit.api`) are imported on first use, so that ``import audiokit`` stays
cheap.
"""
__version__ = "0.1.0"

_API = ("Classifier", "Dancer", "Enhancer", "classify", "dance", "dance_file", "enhance", "enhance_file", "iter_spots",
        "load_classifier", "load_dancer", "load_model", "separate", "separate_file", "spot")


def __getattr__(name: str):
    if name in _API:
        from audiokit import api

        return getattr(api, name)
    raise AttributeError(f"module 'audiokit' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])
