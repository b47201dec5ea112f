"""Build script: the metadata is in setup.cfg. The shipped models (``pretrained/``) and recipes (``recipes/``)
stay at the top of the repository and are carried into the package as ``audiokit/pretrained`` and
``audiokit/recipes`` (see ``audiokit/shipped.py``, which finds them in a wheel and in a checkout alike)."""
from setuptools import find_packages, setup

DATA_PACKAGES = {"audiokit.pretrained": "pretrained", "audiokit.recipes": "recipes"}

setup(
    packages=find_packages(include=["audiokit", "audiokit.*"]) + list(DATA_PACKAGES),
    package_dir=DATA_PACKAGES,
    package_data={"audiokit.pretrained": ["*.safetensors", "*.md", "samples/*"],
                  "audiokit.recipes": ["*/*.yaml"]},
)
