"""Packaging beyond what pyproject.toml can say: the shipped models travel in the wheel as package data.

The models live in the checkout's top-level ``models/`` (tools write there, cards sit beside them); a wheel carries
the ONNX files the default config runs and ``manifest.json`` (their sha256, presets and sources) as
``monitor/_models/``, where an installed ``monitor.config.MODELS_DIR`` finds them. No ``.pt``: torch is not an
edge dependency, and the wheel stays small. The metadata is in pyproject.toml.
"""

from setuptools import find_packages, setup

# What `crymonitor run` and `replay` need with the built-in defaults (monitor/config.py: detector.model,
# classifier.model), and the manifest that vouches for them. tests/test_setup.py holds the wheel to this.
SHIPPED_MODELS = ["manifest.json", "detector-yamnet-lwf-int8.onnx", "classifier.onnx"]

setup(
    packages=[*find_packages(include=["monitor", "monitor.*"]), "monitor._models"],
    package_dir={"monitor._models": "models"},
    package_data={"monitor._models": SHIPPED_MODELS, "monitor.training.cards": ["*.md"]},  # and the cards' templates
    exclude_package_data={"monitor._models": ["*.pt", "*.md"]},
)
