#!/usr/bin/env python3
"""Demo client: drives a running gsbp node through the planner's job over DDS.

1. waits for the services and polls ``~/segment`` until the node is ready (progress lines);
2. ``~/segment`` positive ["mug"], negative ["table"];
3. ``~/transfer_affordance`` in lift-with-poses mode with views of the demo scene: their
   images, part masks (mug handle -> "grasp", mug body -> "contain") and CameraInfo/Pose
   (in the node's frame, from its scene_to_frame parameters);
4. ``~/save_region`` of the segmented mug;
and writes to ``--out``: segmented.ply, affordance_<label>.ply, affordance.ply (binary
xyz rgb), grasps.json (the transfer's ranked grasps on the mug handle, in the node's frame),
indices.json, summary.json and summary.md (counts, centroid, boxes, approach, grasps,
latencies, what arrived on ~/segmented_cloud, ~/affordance_markers and ~/grasp_poses).
Exit code 0 only if every call succeeded.

    python -m gsbp_ros.nodes.demo_client --scene-dir out/demo/scene --out out/demo_client \
        [--node /gsbp] [--timeout 300]
    ros2 run gsbp_ros gsbp_demo_client --scene-dir ... --out ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rclpy
from geometry_msgs.msg import PoseArray
from rcl_interfaces.srv import GetParameters
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import PointCloud2
from visualization_msgs.msg import MarkerArray

from gsbp_ros.fileio import atomic_write
from gsbp_ros.nodes.conversions import (
    SceneToFrame,
    camera_to_info_pose,
    numpy_to_image,
    read_points,
    unpack_rgb,
)
from gsbp_ros.nodes.qos import LATCHED_QOS
from gsbp_ros.srv import SaveRegion, Segment, TransferAffordance

AFFORDANCE_PARTS = {"grasp": "mug_handle", "contain": "mug_body"}


class DemoError(RuntimeError):
    pass


#: Resend a request that has had no answer for this long (seconds); see :meth:`Client.call`.
RESEND_AFTER_S = 2.0
#: Services whose requests must not run twice (they write files, change state): never resent.
NOT_RESENT = frozenset({"SaveRegion", "ChangeState"})


class Client:
    """Blocking service calls from a node that an executor spins in another thread."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._clients: dict[str, object] = {}

    def call(
        self,
        srv_type,
        name: str,
        request,
        timeout: float,
        *,
        resend_after: float | None = -1.0,
    ):
        """Call ``name`` and wait up to ``timeout`` s for the answer.

        With ``resend_after`` (seconds; None = never, for requests that must not run twice)
        a request without an answer by then is sent again from a new client of the service,
        and so on until the deadline; the first answer wins. Under concurrent clients,
        rmw_fastrtps with Fast DDS 3.2 can stop delivering answers to one client's reader
        while the node answers every request (docs/reliability.md); a new client has a new
        reader. The default resends after :data:`RESEND_AFTER_S` except for the services of
        :data:`NOT_RESENT`.
        """
        if resend_after is not None and resend_after < 0:
            resend_after = None if srv_type.__name__ in NOT_RESENT else RESEND_AFTER_S
        deadline = time.monotonic() + timeout
        done = threading.Event()
        sent: list[tuple[object, object]] = []  # (client, future)
        while True:
            client = self._client(srv_type, name, fresh=bool(sent))
            left = deadline - time.monotonic()
            if not client.wait_for_service(timeout_sec=max(0.1, left)):
                if not sent:
                    raise DemoError(f"service {name} is not available after {timeout:.0f} s")
                break
            future = client.call_async(request)
            future.add_done_callback(lambda _: done.set())
            sent.append((client, future))
            left = deadline - time.monotonic()
            step = min(left, resend_after) if resend_after else left
            if done.wait(max(0.0, step)) or time.monotonic() >= deadline:
                break
        answered = [f for _, f in sent if f.done()]
        for c, f in sent:
            if not f.done():
                c.remove_pending_request(f)
        if not answered:
            raise DemoError(f"service {name} did not answer within {timeout:.0f} s")
        return answered[0].result()

    def _client(self, srv_type, name: str, *, fresh: bool = False):
        """The client of ``name``; ``fresh`` replaces it by a new one (new DDS endpoints)."""
        old = self._clients.get(name)
        if old is not None and not fresh:
            return old
        self._clients[name] = self.node.create_client(srv_type, name)
        if old is not None:
            self.node.destroy_client(old)
        return self._clients[name]


def wait_until_ready(
    client: Client, target: str, timeout: float, on_wait: Callable[[object], None] | None = None
):
    """Poll ``<target>/segment`` with a valid request until the node has started.

    Returns the first answer that is not "not ready" (a success, or a failure of the query
    itself); raises :class:`DemoError` when the node's start-up failed or after ``timeout``
    seconds. ``on_wait(response)`` runs after each "not ready" answer (progress, checks).
    """
    deadline = time.monotonic() + timeout
    request = Segment.Request(positive=["mug"])
    while True:
        left = max(1.0, deadline - time.monotonic())
        res = client.call(Segment, f"{target}/segment", request, left)
        if not res.message.startswith("not ready"):
            return res
        if "start-up failed" in res.message:
            raise DemoError(res.message)
        if time.monotonic() > deadline:
            raise DemoError(f"node not ready after {timeout:.0f} s: {res.message}")
        if on_wait is not None:
            on_wait(res)
        time.sleep(0.5)  # polling interval of a condition


def transfer_request(cameras, images, masks, labels, transform: SceneToFrame, k: int):
    """A lift-with-poses ``TransferAffordance`` request: per view its RGB image (rgb8), its
    mask (mono8), and its CameraInfo and optical-frame pose in the node's frame."""
    req = TransferAffordance.Request(labels=list(labels), k=int(k))
    for cam, img, mask in zip(cameras, images, masks):
        info, pose = camera_to_info_pose(cam, transform)
        req.source_images.append(numpy_to_image(img, "rgb8"))
        req.source_masks.append(numpy_to_image(mask, "mono8"))
        req.source_camera_infos.append(info)
        req.source_poses.append(pose)
    return req


def cloud_xyz_rgb(cloud: PointCloud2) -> tuple[np.ndarray, np.ndarray]:
    """[N, 3] float64 points and [N, 3] uint8 colours (grey without an ``rgb`` field)."""
    pts = read_points(cloud)
    xyz = np.stack([pts["x"], pts["y"], pts["z"]], axis=-1).astype(np.float64)
    if "rgb" in (pts.dtype.names or ()):
        return xyz, unpack_rgb(pts["rgb"])
    return xyz, np.full((len(xyz), 3), 200, np.uint8)


def write_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    """Binary little-endian PLY with x y z (float32) and red green blue (uchar)."""
    n = xyz.shape[0]
    rec = np.zeros(
        n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")]
    )
    for i, k in enumerate("xyz"):
        rec[k] = xyz[:, i]
    for i, k in enumerate("rgb"):
        rec[k] = rgb[:, i]
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {n}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    with atomic_write(path) as f:
        f.write(header.encode("ascii"))
        f.write(rec.tobytes())


def summary_dict(s) -> dict:
    def p(v):
        return [round(v.x, 5), round(v.y, 5), round(v.z, 5)]

    q = s.obb_pose.orientation
    return {
        "count": int(s.count),
        "centroid": p(s.centroid),
        "aabb_min": p(s.aabb_min),
        "aabb_max": p(s.aabb_max),
        "obb_center": p(s.obb_pose.position),
        "obb_orientation_xyzw": [round(q.x, 5), round(q.y, 5), round(q.z, 5), round(q.w, 5)],
        "obb_size": p(s.obb_size),
        "principal_axis": p(s.principal_axis),
        "approach": p(s.approach) if s.has_approach else None,
    }


def grasp_rows(grasps, limit: int = 10) -> list[dict]:
    """gsbp_ros/Grasp messages -> plain rows (pose, approach = +z, closing = +y, width, score)."""
    from gsbp_ros.nodes.conversions import quaternion_to_matrix

    rows = []
    for g in list(grasps)[:limit]:
        q, p = g.pose.orientation, g.pose.position
        rot = quaternion_to_matrix([q.x, q.y, q.z, q.w])
        rows.append(
            {
                "region": g.region,
                "position": [round(p.x, 4), round(p.y, 4), round(p.z, 4)],
                "quaternion_xyzw": [round(v, 5) for v in (q.x, q.y, q.z, q.w)],
                "approach": [round(float(v), 3) for v in rot[:, 2]],
                "closing": [round(float(v), 3) for v in rot[:, 1]],
                "width": round(float(g.width), 4),
                "score": round(float(g.score), 4),
            }
        )
    return rows


def get_parameters(client: Client, node_name: str, names: list[str], timeout: float) -> dict:
    req = GetParameters.Request(names=names)
    res = client.call(GetParameters, f"{node_name}/get_parameters", req, timeout)
    from rclpy.parameter import parameter_value_to_python

    return {n: parameter_value_to_python(v) for n, v in zip(names, res.values)}


def demo_views(scene_dir: Path, max_views: int) -> tuple[list, list, list, list[str]]:
    """Up to ``max_views`` demo views with the most mug-handle pixels: cameras, RGB images,
    affordance masks (1 = grasp, 2 = contain) and the affordance labels."""
    from gsbp_ros.cameras import load_cameras
    from gsbp_ros.images import read_label_image, read_rgb_image

    names = json.loads((scene_dir / "names.json").read_text())
    parts = names["parts"]
    labels = list(AFFORDANCE_PARTS)
    values = {parts.index(part) + 1: i + 1 for i, part in enumerate(AFFORDANCE_PARTS.values())}
    views = []
    for cam in load_cameras(scene_dir / "sparse" / "0"):
        part_map = read_label_image(scene_dir / "labels" / "parts" / f"{cam.stem}.png")
        mask = np.zeros(part_map.shape, np.uint8)
        for part_value, label_value in values.items():
            mask[part_map == part_value] = label_value
        views.append((int((mask == 1).sum()), cam, mask))
    views.sort(key=lambda v: -v[0])
    chosen = [v for v in views if v[0] > 0][:max_views]
    if not chosen:
        raise DemoError(f"no view of {scene_dir} shows the mug handle")
    cams = [c for _, c, _ in chosen]
    images = [read_rgb_image(scene_dir / "images" / c.name) for c in cams]
    masks = [m for _, _, m in chosen]
    return cams, images, masks, labels


def run(args: argparse.Namespace, node: Node, client: Client) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    target = args.node.rstrip("/")
    report: dict = {"node": target, "calls": {}, "topics": {}}
    log = node.get_logger()

    segmented: list[PointCloud2] = []
    markers: list[MarkerArray] = []
    node.create_subscription(
        PointCloud2, f"{target}/segmented_cloud", segmented.append, LATCHED_QOS
    )
    node.create_subscription(
        MarkerArray, f"{target}/affordance_markers", markers.append, LATCHED_QOS
    )
    grasp_poses: list[PoseArray] = []
    node.create_subscription(PoseArray, f"{target}/grasp_poses", grasp_poses.append, LATCHED_QOS)

    # 1. wait until ready
    t0 = time.monotonic()
    last_print = [0.0]

    def progress(res) -> None:
        if time.monotonic() - last_print[0] > 2.0:
            log.info(f"waiting: {res.message}")
            last_print[0] = time.monotonic()

    wait_until_ready(client, target, args.timeout, progress)
    report["ready_after_s"] = round(time.monotonic() - t0, 2)
    log.info(f"node ready after {report['ready_after_s']} s")

    params = get_parameters(
        client,
        target,
        [
            "frame_id",
            "scene_to_frame.translation",
            "scene_to_frame.rotation",
            "scene_to_frame.scale",
            "default_k",
        ],
        args.timeout,
    )
    transform = SceneToFrame.from_params(
        params["scene_to_frame.translation"],
        params["scene_to_frame.rotation"],
        params["scene_to_frame.scale"],
    )
    report["frame_id"] = params["frame_id"]

    def record(name: str, res, t: float) -> None:
        entry = {
            "success": bool(res.success),
            "message": res.message,
            "round_trip_s": round(t, 3),
        }
        if hasattr(res, "latency_s"):
            entry["node_latency_s"] = round(float(res.latency_s), 3)
        report["calls"][name] = entry
        if res.success:
            log.info(f"{name}: {res.message}")
        else:
            log.error(f"{name}: {res.message}")

    # 2. segment
    req = Segment.Request(positive=["mug"], negative=["table"], threshold=0.0)
    t = time.monotonic()
    seg = client.call(Segment, f"{target}/segment", req, args.timeout)
    record("segment", seg, time.monotonic() - t)
    indices: dict[str, object] = {}
    if seg.success:
        report["calls"]["segment"]["summary"] = summary_dict(seg.summary)
        write_ply(out / "segmented.ply", *cloud_xyz_rgb(seg.cloud))
        indices["segment"] = [int(i) for i in seg.indices]
        report["calls"]["segment"]["grasps"] = grasp_rows(seg.grasps)

    # 3. transfer affordance (lift with poses)
    cams, images, masks, labels = demo_views(Path(args.scene_dir), args.views)
    req = transfer_request(cams, images, masks, labels, transform, params["default_k"])
    t = time.monotonic()
    aff = client.call(TransferAffordance, f"{target}/transfer_affordance", req, args.timeout)
    record("transfer_affordance", aff, time.monotonic() - t)
    if aff.success:
        report["calls"]["transfer_affordance"]["views"] = [c.name for c in cams]
        regions = {}
        all_xyz, all_rgb = [], []
        for r in aff.regions:
            regions[r.name] = summary_dict(r.summary)
            indices[f"affordance_{r.name}"] = {
                "indices": [int(i) for i in r.indices],
                "scores": [float(v) for v in r.scores],
            }
            if r.cloud.width:
                xyz, rgb = cloud_xyz_rgb(r.cloud)
                write_ply(out / f"affordance_{r.name}.ply", xyz, rgb)
                all_xyz.append(xyz)
                all_rgb.append(rgb)
        if all_xyz:
            write_ply(out / "affordance.ply", np.concatenate(all_xyz), np.concatenate(all_rgb))
        report["calls"]["transfer_affordance"]["regions"] = regions
        report["calls"]["transfer_affordance"]["grasps"] = grasp_rows(aff.grasps)
        with atomic_write(out / "grasps.json", "w") as f:
            json.dump(grasp_rows(aff.grasps, limit=len(aff.grasps)), f, indent=1)

    # 4. save the segmented mug (last selection) below the node's output_dir
    t = time.monotonic()
    save = client.call(
        SaveRegion, f"{target}/save_region", SaveRegion.Request(path="demo/mug.ply"), args.timeout
    )
    record("save_region", save, time.monotonic() - t)
    if save.success:
        report["calls"]["save_region"].update({"path": save.path, "count": int(save.count)})

    # 5. what arrived on the latched topics for these calls: the messages that carry the
    #    responses' stamps (a latched topic may also deliver an older run's last message).
    seg_stamp = seg.header.stamp if seg.success else None
    aff_stamp = aff.header.stamp if aff.success else None

    def arrived() -> tuple[list[PointCloud2], list[MarkerArray], list[PoseArray]]:
        clouds = [c for c in segmented if c.header.stamp == seg_stamp]
        arrays = [a for a in markers if a.markers and a.markers[0].header.stamp == aff_stamp]
        poses = [p for p in grasp_poses if p.header.stamp == aff_stamp]
        return clouds, arrays, poses

    want_poses = aff_stamp is not None and len(aff.grasps) > 0
    wait_until = time.monotonic() + 10.0
    clouds, arrays, poses = arrived()
    while time.monotonic() < wait_until and not (
        (clouds or seg_stamp is None)
        and (arrays or aff_stamp is None)
        and (poses or not want_poses)
    ):
        time.sleep(0.1)  # polling interval of a condition
        clouds, arrays, poses = arrived()
    report["topics"]["segmented_cloud"] = {
        "messages": len(clouds),
        "points": int(clouds[-1].width) if clouds else 0,
    }
    report["topics"]["affordance_markers"] = {
        "messages": len(arrays),
        "namespaces": sorted({m.ns for a in arrays for m in a.markers if m.ns}),
        "markers": len(arrays[-1].markers) if arrays else 0,
    }
    report["topics"]["grasp_poses"] = {
        "messages": len(poses),
        "poses": len(poses[-1].poses) if poses else 0,
    }
    report["success"] = all(c["success"] for c in report["calls"].values())
    if aff.success and not aff.grasps:  # the demo's point: grasps a planner can execute
        report["success"] = False
        report["error"] = f"no grasp on the mug handle: {aff.message}"
    with atomic_write(out / "indices.json", "w") as f:
        json.dump(indices, f)
    return report


def write_reports(out: Path, report: dict) -> None:
    with atomic_write(out / "summary.json", "w") as f:
        f.write(json.dumps(report, indent=2) + "\n")
    lines = [
        "# gsbp demo client",
        "",
        f"Node `{report['node']}`, frame `{report.get('frame_id', '?')}`, ready after "
        f"{report.get('ready_after_s', '?')} s. Overall: "
        f"**{'success' if report.get('success') else 'FAILED'}**.",
        "",
        "| call | success | node latency (s) | round trip (s) | message |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, c in report["calls"].items():
        lines.append(
            f"| {name} | {c['success']} | {c.get('node_latency_s', '')} | {c['round_trip_s']} "
            f"| {c['message']} |"
        )
    seg = report["calls"].get("segment", {}).get("summary")
    regions = report["calls"].get("transfer_affordance", {}).get("regions", {})
    rows = ([("segment: mug", seg)] if seg else []) + [
        (f"affordance: {k}", v) for k, v in regions.items()
    ]
    if rows:
        lines += [
            "",
            "| region | count | centroid | AABB min | AABB max | OBB size | approach |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, s in rows:
            lines.append(
                f"| {name} | {s['count']} | {s['centroid']} | {s['aabb_min']} | "
                f"{s['aabb_max']} | {s['obb_size']} | {s['approach']} |"
            )
    for call in ("transfer_affordance", "segment"):
        rows = report["calls"].get(call, {}).get("grasps")
        if not rows:
            continue
        lines += [
            "",
            f"Grasps from {call} (frame `{report.get('frame_id', '?')}`, best first; +z "
            "approach toward the object, +y closing direction, origin between the fingertips):",
            "",
            "| # | region | position | approach | closing | width | score |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for i, g in enumerate(rows[:5]):
            lines.append(
                f"| {i} | {g['region']} | {g['position']} | {g['approach']} | "
                f"{g['closing']} | {g['width']} | {g['score']} |"
            )
    t = report.get("topics", {})
    if t:
        lines += [
            "",
            f"Received on ~/segmented_cloud: {t['segmented_cloud']['messages']} message(s), "
            f"{t['segmented_cloud']['points']} points. On ~/affordance_markers: "
            f"{t['affordance_markers']['messages']} message(s), namespaces "
            f"{t['affordance_markers']['namespaces']}. On ~/grasp_poses: "
            f"{t.get('grasp_poses', {}).get('messages', 0)} message(s), "
            f"{t.get('grasp_poses', {}).get('poses', 0)} poses.",
        ]
    if "error" in report:
        lines += ["", f"Error: {report['error']}"]
    with atomic_write(out / "summary.md", "w") as f:
        f.write("\n".join(lines) + "\n")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scene-dir", required=True, help="demo scene folder (write_demo_scene)")
    p.add_argument("--out", required=True, help="folder for the .ply files and summaries")
    p.add_argument("--node", default="/gsbp", help="fully qualified name of the gsbp node")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the node")
    p.add_argument("--views", type=int, default=4, help="source views for the transfer")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv if argv is None else argv
    ros_args = rclpy.utilities.remove_ros_args(argv)
    args = parse_args(ros_args[1:])
    rclpy.init(args=argv)
    node = Node("gsbp_demo_client")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"node": args.node, "calls": {}, "success": False}
    try:
        report = run(args, node, Client(node))
    except (KeyboardInterrupt, ExternalShutdownException):
        report["error"] = "interrupted"
    except Exception as exc:  # report, never a traceback-only exit
        report["error"] = f"{type(exc).__name__}: {exc}"
        node.get_logger().error(report["error"])
    finally:
        write_reports(out, report)
        executor.shutdown(timeout_sec=2)
        spinner.join(timeout=5)
        node.destroy_node()
        rclpy.try_shutdown()
    ok = bool(report.get("success")) and "error" not in report
    print(f"demo client: {'OK' if ok else 'FAILED'}; summary in {out / 'summary.md'}")
    return 0 if ok else 1


if __name__ == "__main__":
    code = main()
    # Everything is shut down and written. Skip the interpreter's teardown: with the PyPI
    # ROS 2 wheels it sometimes aborts ("terminate called without an active exception")
    # while destroying middleware threads, which would turn a result into exit code 134.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
