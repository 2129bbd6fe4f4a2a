"""Packaging for lstmcore; maps kernels/ to the import name lstmcore.kernels."""

from setuptools import setup

setup(
    name="lstmcore",
    version="0.1.0",
    description="A GPU-accelerated training core for LSTM models on TensorFlow 2 / Keras 3.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["lstmcore", "lstmcore.kernels", "benchmarks"],
    # kernels/ is a leaf with its own top-level folder; it is installed as lstmcore.kernels.
    package_dir={"lstmcore": "lstmcore", "lstmcore.kernels": "kernels", "benchmarks": "benchmarks"},
    package_data={"benchmarks": ["*.json"]},
    install_requires=[
        "tensorflow>=2.16,<3",
        # Keras releases below 3.13.2 have known safe_mode bypasses (see SECURITY.md).
        "keras>=3.13.2",
        "numpy",
        "tensorboard",
    ],
    extras_require={
        "gpu": ["tensorflow[and-cuda]>=2.16,<3"],
        "test": ["pytest>=7", "hypothesis>=6"],
        "plot": ["matplotlib"],
    },
    entry_points={"console_scripts": ["lstmcore=lstmcore.cli:main"]},
)
