"""CameraInfo + Pose (in the node's frame) <-> :class:`gsbp_ros.camera.Camera` (scene frame)."""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import Pose
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from gsbp_ros.nodes.errors import MessageError
from gsbp_ros.nodes.frame_msgs import SceneToFrame, matrix_to_pose, pose_to_matrix


def camera_from_info_pose(
    info: CameraInfo, pose: Pose, transform: SceneToFrame, name: str = "source"
):
    """CameraInfo (intrinsics, size) + camera pose in the node's frame -> scene Camera.

    ``pose`` is the optical frame's pose (x right, y down, z forward) in ``frame_id``. The
    returned camera's ``world_to_cam`` maps *scene* points into that optical frame (up to the
    similarity's scale, which projection ignores). Distortion is ignored.
    """
    from gsbp_ros.camera import Camera

    if info.width <= 0 or info.height <= 0:
        raise MessageError(f"{name}: camera info has an empty size {info.width}x{info.height}")
    k = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
    if not np.isfinite(k).all() or k[0, 0] <= 0 or k[1, 1] <= 0 or k[2, 2] == 0:
        raise MessageError(f"{name}: camera info k[] is not a valid intrinsic matrix: {k.ravel()}")
    k = k / k[2, 2]
    cam_to_frame = pose_to_matrix(pose)
    r_cs = transform.rotation_to_scene(cam_to_frame[:3, :3])
    c_s = transform.inverse_points(cam_to_frame[:3, 3])
    w2c = np.eye(4)
    w2c[:3, :3] = r_cs.T
    w2c[:3, 3] = -r_cs.T @ c_s
    return Camera(name=name, K=k, world_to_cam=w2c, width=int(info.width), height=int(info.height))


def camera_to_info_pose(camera, transform: SceneToFrame, header: Header | None = None):
    """Scene Camera -> (CameraInfo, Pose in the node's frame): the inverse of the above."""
    c2w = np.linalg.inv(np.asarray(camera.world_to_cam, dtype=np.float64))
    m = np.eye(4)
    m[:3, :3] = transform.rotation_to_frame(c2w[:3, :3])
    m[:3, 3] = transform.points(c2w[:3, 3])
    info = CameraInfo()
    if header is not None:
        info.header = header
    info.width, info.height = int(camera.width), int(camera.height)
    k = np.asarray(camera.K, dtype=np.float64)
    info.k = k.ravel().tolist()
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    info.r = np.eye(3).ravel().tolist()
    p = np.zeros((3, 4))
    p[:3, :3] = k
    info.p = p.ravel().tolist()
    return info, matrix_to_pose(m)
