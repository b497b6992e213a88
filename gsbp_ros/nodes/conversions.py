"""Conversions between ROS 2 messages and the core's numpy / torch types, in one namespace.

Pure functions (numpy + message classes, no node, no executor), one module per message family:

- :mod:`gsbp_ros.nodes.frame_msgs`: quaternions, :class:`SceneToFrame` (scene world ->
  ``frame_id`` similarity), geometry_msgs points and poses.
- :mod:`gsbp_ros.nodes.cloud_msgs`: PointCloud2 writing and reading.
- :mod:`gsbp_ros.nodes.image_msgs`: sensor_msgs/Image <-> numpy with checks.
- :mod:`gsbp_ros.nodes.camera_msgs`: CameraInfo + Pose <-> :class:`gsbp_ros.camera.Camera`.
- :mod:`gsbp_ros.nodes.region_msgs`: selections, labellings and summaries -> Region messages.
- :mod:`gsbp_ros.nodes.marker_msgs`: MarkerArray of regions.

Bad message content raises :class:`MessageError` (a :class:`gsbp_ros.errors.QueryError`), which
the node turns into ``success=false`` and the message. New code may import from the family
modules directly; this module re-exports them so that ``conversions.X`` keeps working.
"""

from gsbp_ros.nodes.camera_msgs import camera_from_info_pose, camera_to_info_pose
from gsbp_ros.nodes.cloud_msgs import (
    cloud_dtype,
    cloud_xyz,
    make_cloud,
    pack_rgb,
    read_points,
    unpack_rgb,
)
from gsbp_ros.nodes.errors import MessageError
from gsbp_ros.nodes.frame_msgs import (
    SceneToFrame,
    matrix_to_pose,
    matrix_to_quaternion,
    points_to_numpy,
    pose_to_matrix,
    quaternion_to_matrix,
    to_point,
    to_vector3,
)
from gsbp_ros.nodes.image_msgs import (
    COLOR_ENCODINGS,
    IMAGE_ENCODINGS,
    MASK_ENCODINGS,
    image_to_mask,
    image_to_numpy,
    image_to_rgb,
    numpy_to_image,
)
from gsbp_ros.nodes.marker_msgs import box_edges, region_markers
from gsbp_ros.nodes.region_msgs import (
    RegionGeometry,
    color_for,
    float32_array,
    labelling_cloud,
    labelling_regions,
    region_cloud,
    region_geometry,
    region_to_msg,
    summary_to_msg,
    uint32_array,
)

__all__ = [
    "COLOR_ENCODINGS",
    "IMAGE_ENCODINGS",
    "MASK_ENCODINGS",
    "MessageError",
    "RegionGeometry",
    "SceneToFrame",
    "box_edges",
    "camera_from_info_pose",
    "camera_to_info_pose",
    "cloud_dtype",
    "cloud_xyz",
    "color_for",
    "float32_array",
    "image_to_mask",
    "image_to_numpy",
    "image_to_rgb",
    "labelling_cloud",
    "labelling_regions",
    "make_cloud",
    "matrix_to_pose",
    "matrix_to_quaternion",
    "numpy_to_image",
    "pack_rgb",
    "points_to_numpy",
    "pose_to_matrix",
    "quaternion_to_matrix",
    "read_points",
    "region_cloud",
    "region_geometry",
    "region_markers",
    "region_to_msg",
    "summary_to_msg",
    "to_point",
    "to_vector3",
    "uint32_array",
    "unpack_rgb",
]
