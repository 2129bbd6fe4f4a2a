"""Packaging for lstmcore; installs kernels/ and benchmarks/ as lstmcore.kernels/.benchmarks."""

from pathlib import Path

from setuptools import setup

setup(
    name="lstmcore",
    version="0.1.0",
    description="A GPU-accelerated training core for LSTM models on TensorFlow 2 / Keras 3.",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["lstmcore", "lstmcore.kernels", "lstmcore.benchmarks"],
    # kernels/ and benchmarks/ keep their own top-level folders; they are installed inside
    # lstmcore, so no top-level "benchmarks" package collides with another distribution's,
    # and a user's own benchmarks/ folder cannot shadow lstmcore's.
    package_dir={
        "lstmcore": "lstmcore",
        "lstmcore.kernels": "kernels",
        "lstmcore.benchmarks": "benchmarks",
    },
    package_data={"lstmcore.benchmarks": ["*.json"]},
    install_requires=[
        "tensorflow>=2.16,<3",
        # Keras releases below 3.13.2 have known safe_mode bypasses (see SECURITY.md); the
        # upper bound is the minor after the newest tested (lstmcore/_keras_compat.py uses
        # Keras privates; tests/test_keras_compat.py checks KERAS_TESTED against the install).
        "keras>=3.13.2,<3.16",
        "numpy",
        "tensorboard",
    ],
    extras_require={
        "gpu": ["tensorflow[and-cuda]>=2.16,<3"],
        # ruff pinned: new releases add rules, and .ci/run fails on any finding.
        "test": ["pytest>=7", "pytest-xdist>=3", "hypothesis>=6", "ruff==0.17.6"],
        "plot": ["matplotlib"],
    },
    entry_points={"console_scripts": ["lstmcore=lstmcore.cli:main"]},
)
