"""gsbp_ros: gradient-weighted feature back-projection onto 3D Gaussian splats.

The core library (this package, except ``gsbp_ros.nodes``) imports no ROS.
"""

import pkgutil

# colcon installs the generated ``gsbp_ros.msg`` / ``gsbp_ros.srv`` modules into its own copy
# of this package; a source checkout (or an editable install) earlier on sys.path would hide
# them. Extending the package path lets one import see both.
__path__ = pkgutil.extend_path(__path__, __name__)

__version__ = "0.1.0"
