"""pip-installable core library and the `gsbp` CLI.

The ROS 2 package (messages, node) is built with colcon from CMakeLists.txt; this file lets
`pip install .` give the ROS-free library on any machine.
"""

from setuptools import find_packages, setup

setup(
    name="gsbp_ros",
    version="0.1.0",
    description="Gradient-weighted feature back-projection onto 3D Gaussian splats, for ROS 2",
    packages=find_packages(include=["gsbp_ros", "gsbp_ros.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1",
        "numpy",
        "safetensors",
        "pillow",
        "transformers>=4.47",  # Dinov2WithRegisters, CLIP pos-embedding interpolation
        "packaging",
        "numba>=0.59",  # the compiled CPU raster engine (falls back to torch without it)
    ],
    extras_require={
        "gpu": ["gsplat>=1.5,<1.6"],  # the series the CUDA tests hold
        "cleanup": ["open3d"],
        "eval": ["scipy", "matplotlib"],  # gsbp eval: label-map corruptions, report plots
        "fast-digest": ["blake3"],  # feature-cache digest ~5x faster than hashlib's SHA-256
    },
    entry_points={"console_scripts": ["gsbp = gsbp_ros.cli:main"]},
)
