"""gsbp_ros: gradient-weighted feature back-projection onto 3D Gaussian splats.

The core library (this package, except ``gsbp_ros.nodes``) imports no ROS.
"""

__version__ = "0.1.0"
