"""Training output layouts written the way the tools write them (helpers for the tests).

Every writer here follows the format as its tool documents it, independently of the
readers under test: Inria ``cameras.json`` as ``camera_to_JSON`` writes it, a splatfacto
export (splats in nerfstudio's normalised frame, ``transforms.json`` with nerfstudio's COLMAP
``applied_transform``, ``dataparser_transforms.json``), a NeRF-synthetic folder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from gsbp_ros.camera import Camera
from gsbp_ros.demo_scene import make_demo_scene
from gsbp_ros.scene import GaussianScene

# What nerfstudio's colmap_to_json stores as applied_transform (swap x/y, flip z).
NERFSTUDIO_APPLIED = np.array([[0.0, 1, 0, 0], [1, 0, 0, 0], [0, 0, -1, 0]])
GL = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV <-> OpenGL camera axes


def demo_and_cameras(views: int = 4, width: int = 64, height: int = 48):
    demo = make_demo_scene(density=0.25)
    return demo, demo.cameras(num_views=views, width=width, height=height)


def similarity(seed: int, scale: float) -> np.ndarray:
    """A [4, 4] similarity with a generic rotation, the given scale and a translation."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    T = np.eye(4)
    T[:3, :3] = scale * q
    T[:3, 3] = rng.normal(size=3)
    return T


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = a.T
    bw, bx, by, bz = b.T
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def _rot_quat(R: np.ndarray) -> np.ndarray:
    w = math.sqrt(max(0.0, 1 + R[0, 0] + R[1, 1] + R[2, 2])) / 2
    x = math.copysign(math.sqrt(max(0.0, 1 + R[0, 0] - R[1, 1] - R[2, 2])) / 2, R[2, 1] - R[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1 - R[0, 0] + R[1, 1] - R[2, 2])) / 2, R[0, 2] - R[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1 - R[0, 0] - R[1, 1] + R[2, 2])) / 2, R[1, 0] - R[0, 1])
    return np.array([w, x, y, z])


def transform_scene(scene: GaussianScene, T: np.ndarray) -> GaussianScene:
    """The splats moved by the similarity T (degree-0 colours only: SH bands would rotate)."""
    assert scene.sh.shape[1] == 1
    s = np.linalg.det(T[:3, :3]) ** (1 / 3)
    R = T[:3, :3] / s
    means = scene.means.double().numpy() @ T[:3, :3].T + T[:3, 3]
    quats = _quat_mul(
        np.broadcast_to(_rot_quat(R), (scene.num_gaussians, 4)), scene.unit_quats().double().numpy()
    )
    return GaussianScene(
        means=torch.from_numpy(means).float(),
        quats=torch.from_numpy(quats).float(),
        log_scales=scene.log_scales + float(np.log(s)),
        logit_opacities=scene.logit_opacities.clone(),
        sh=scene.sh.clone(),
    )


def moved_cameras(cameras: list[Camera], T: np.ndarray) -> list[np.ndarray]:
    """Camera-to-world [4, 4] (OpenCV axes, orthonormal) of each camera after x -> T x."""
    s = np.linalg.det(T[:3, :3]) ** (1 / 3)
    out = []
    for cam in cameras:
        c2w = T @ np.linalg.inv(cam.world_to_cam.double().numpy())
        c2w[:3, :3] /= s
        out.append(c2w)
    return out


def write_sparse_cloud(path: Path, n: int = 20) -> None:
    """A COLMAP-style seed point cloud (x y z red green blue): a .ply that is not a splat."""
    header = ["ply", "format ascii 1.0", f"element vertex {n}"]
    header += [f"property float {c}" for c in "xyz"]
    header += [f"property uchar {c}" for c in ("red", "green", "blue")]
    rows = [f"{i * 0.1} {i * 0.2} {i * 0.3} 10 20 30" for i in range(n)]
    path.write_text("\n".join([*header, "end_header", *rows]) + "\n")


def write_inria_cameras(path: Path, cameras: list[Camera], c2ws: list[np.ndarray]) -> None:
    """cameras.json as the reference ``camera_to_JSON`` writes it (img_name: stem)."""
    entries = []
    for i, (cam, c2w) in enumerate(zip(cameras, c2ws)):
        fx, fy, _, _ = cam.pinhole()
        entries.append(
            {
                "id": i,
                "img_name": cam.stem,
                "width": cam.width,
                "height": cam.height,
                "position": c2w[:3, 3].tolist(),
                "rotation": [row.tolist() for row in c2w[:3, :3]],
                "fy": fy,
                "fx": fx,
            }
        )
    path.write_text(json.dumps(entries))


def write_splatfacto_export(
    root: Path, demo_scene: GaussianScene, cameras: list[Camera], T_dp: np.ndarray, scale: float
) -> GaussianScene:
    """A splatfacto export: splats in the dataparser frame p = scale * T_dp p_orig, the
    transforms.json of ns-process-data (poses in the applied frame), the dataparser file."""
    A = np.vstack([NERFSTUDIO_APPLIED, [0, 0, 0, 1]])
    exported = transform_scene(demo_scene, np.diag([scale, scale, scale, 1.0]) @ T_dp)
    exported.save(root / "splat.ply")
    write_sparse_cloud(root / "sparse_pc.ply")
    frames = []
    for cam, c2w in zip(cameras, moved_cameras(cameras, A)):
        fx, fy, cx, cy = cam.pinhole()
        frames.append(
            {
                "file_path": f"images/{cam.stem}.png",
                "fl_x": fx,
                "fl_y": fy,
                "cx": cx,
                "cy": cy,
                "w": cam.width,
                "h": cam.height,
                "transform_matrix": (c2w @ GL).tolist(),
                "colmap_im_id": len(frames) + 1,
            }
        )
    meta = {
        "camera_model": "OPENCV",
        "frames": frames,
        "applied_transform": NERFSTUDIO_APPLIED.tolist(),
        "ply_file_path": "sparse_pc.ply",
    }
    (root / "transforms.json").write_text(json.dumps(meta, indent=1))
    (root / "dataparser_transforms.json").write_text(
        json.dumps({"transform": T_dp[:3].tolist(), "scale": scale})
    )
    return exported


def write_blender(
    folder: Path, cameras: list[Camera], c2ws: list[np.ndarray], images: list[np.ndarray]
) -> None:
    """A NeRF-synthetic folder: transforms_{train,val,test}.json with camera_angle_x only,
    frames ``./train/r_<i>`` without extension, RGBA PNGs beside them."""
    from PIL import Image

    (folder / "train").mkdir(parents=True)
    fx = cameras[0].pinhole()[0]
    angle = 2 * math.atan(0.5 * cameras[0].width / fx)
    frames = []
    for i, (c2w, image) in enumerate(zip(c2ws, images)):
        frames.append(
            {
                "file_path": f"./train/r_{i}",
                "rotation": 0.1,
                "transform_matrix": (c2w @ GL).tolist(),
            }
        )
        Image.fromarray(image).save(folder / "train" / f"r_{i}.png")
    doc = {"camera_angle_x": angle, "frames": frames}
    (folder / "transforms_train.json").write_text(json.dumps(doc, indent=1))
    for split in ("val", "test"):
        (folder / f"transforms_{split}.json").write_text(
            json.dumps({"camera_angle_x": angle, "frames": []})
        )
