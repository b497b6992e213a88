#!/usr/bin/env python3
"""The gsbp node: back-projected Gaussian features behind ROS 2 services.

Start-up (loading the scene, back-projecting the views) runs in a background thread; until
it is done every request answers ``success=false`` with ``"not ready: back-projecting
37/120 views"``. A start-up failure (bad scene file, ...) keeps the node up: it reports the
failure in every response and on /diagnostics.

Services (names relative to the node):
    ~/segment              gsbp_ros/srv/Segment              text prompts -> Gaussians
    ~/segment_points       gsbp_ros/srv/SegmentPoints        3D point prompts -> Gaussians
    ~/transfer_affordance  gsbp_ros/srv/TransferAffordance   annotated images -> regions
    ~/save_region          gsbp_ros/srv/SaveRegion           selection -> splat .ply
Topics (reliable, transient local, depth 1):
    ~/scene_cloud (once ready), ~/segmented_cloud, ~/affordance_cloud: PointCloud2
    ~/affordance_markers: MarkerArray (regions; grippers of the grasps, namespace "grippers")
    ~/grasp_poses: PoseArray, the grasps of the last Segment / TransferAffordance, best first
    /diagnostics: DiagnosticArray every diagnostics_period seconds
Subscribed: /clicked_point (geometry_msgs/PointStamped, RViz "Publish Point") -> a point
segmentation published on ~/segmented_cloud.

Run: ``python -m gsbp_ros.nodes.gsbp_node --ros-args --params-file config/gsbp.yaml
-p scene_path:=scene.ply`` (or ``ros2 launch gsbp_ros gsbp.launch.py scene_path:=...``).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Callable

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PointStamped, PoseArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from gsbp_ros.errors import GsbpError
from gsbp_ros.nodes import params as P
from gsbp_ros.nodes.conversions import (
    MessageError,
    RegionGeometry,
    SceneToFrame,
    camera_from_info_pose,
    float32_array,
    image_to_mask,
    image_to_rgb,
    labelling_cloud,
    labelling_regions,
    make_cloud,
    points_to_numpy,
    region_cloud,
    region_geometry,
    region_markers,
    region_to_msg,
    uint32_array,
)
from gsbp_ros.nodes.grasp_msgs import (
    grasp_messages,
    grasp_pose_array,
    gripper_markers,
    plan_node_grasps,
    read_grasp_parameters,
)
from gsbp_ros.nodes.qos import LATCHED_QOS
from gsbp_ros.results import Selection
from gsbp_ros.srv import SaveRegion, Segment, SegmentPoints, TransferAffordance


class _NotStarted(GsbpError):
    pass


class GsbpNode(Node):
    """The ROS 2 front end of :class:`gsbp_ros.engine.GsbpEngine` (conversions only)."""

    def __init__(self, *, node_name: str = "gsbp", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        P.declare_parameters(self)
        self.values = P.read_parameters(self)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.frame_id: str = self.values["frame_id"] or "map"
        self.transform = SceneToFrame()
        self.engine = None
        self._startup_error = ""
        self._scene_lock = threading.Lock()
        self._means: np.ndarray | None = None  # [N, 3] scene frame
        self._colors: np.ndarray | None = None  # [N, 3] uint8
        self._last_query: dict[str, object] = {}

        pub = self.create_publisher
        self.scene_pub = pub(PointCloud2, "~/scene_cloud", LATCHED_QOS)
        self.segmented_pub = pub(PointCloud2, "~/segmented_cloud", LATCHED_QOS)
        self.affordance_pub = pub(PointCloud2, "~/affordance_cloud", LATCHED_QOS)
        self.markers_pub = pub(MarkerArray, "~/affordance_markers", LATCHED_QOS)
        self.grasp_pub = pub(PoseArray, "~/grasp_poses", LATCHED_QOS)
        self.diag_pub = pub(DiagnosticArray, "/diagnostics", 10)

        def group() -> MutuallyExclusiveCallbackGroup:
            return MutuallyExclusiveCallbackGroup()

        self.create_service(Segment, "~/segment", self._on_segment, callback_group=group())
        self.create_service(
            SegmentPoints, "~/segment_points", self._on_segment_points, callback_group=group()
        )
        self.create_service(
            TransferAffordance,
            "~/transfer_affordance",
            self._on_transfer,
            callback_group=group(),
        )
        self.create_service(SaveRegion, "~/save_region", self._on_save, callback_group=group())
        self.create_subscription(
            PointStamped, "/clicked_point", self._on_clicked_point, 10, callback_group=group()
        )
        period = self.values["diagnostics_period"]
        self.create_timer(
            period if period > 0 else 1.0, self._publish_diagnostics, callback_group=group()
        )

        try:
            P.validate(self.values)
            self.transform = SceneToFrame.from_params(
                self.values["scene_to_frame.translation"],
                self.values["scene_to_frame.rotation"],
                self.values["scene_to_frame.scale"],
            )
            from gsbp_ros.engine import GsbpEngine

            self.engine = GsbpEngine(P.engine_config(self.values), log=self._engine_log)
        except GsbpError as exc:
            self._startup_error = str(exc)
            self.get_logger().error(f"start-up failed: {exc}")
            return
        self._thread = threading.Thread(target=self._start_engine, name="gsbp-start", daemon=True)
        self._thread.start()

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Run-time changes (the parameters that are not read-only) pass the start-up checks."""
        reasons = [r for r in (P.check_value(p.name, p.value) for p in params) if r]
        return SetParametersResult(successful=not reasons, reason="; ".join(reasons))

    # -- start-up -------------------------------------------------------------------------------
    def _engine_log(self, message: str) -> None:
        self.get_logger().info(message)

    def _start_engine(self) -> None:
        self.get_logger().info(f"starting: scene {self.values['scene_path']!r}")
        try:
            self.engine.start()  # blocking; failures end in state "failed", never raise
        except Exception:  # the engine promises not to raise; never let the thread die loud
            self.get_logger().error(traceback.format_exc())
        status = self.engine.status()
        if status.state != "ready":
            self.get_logger().error(f"not serving: {status.message}")
            return
        try:
            means, colors = self._scene_arrays()
            if self.values["publish_scene_cloud"]:
                cloud = make_cloud(self.transform.points(means), rgb=colors, header=self._header())
                self.scene_pub.publish(cloud)
            self.get_logger().info(
                f"ready: {means.shape[0]} Gaussians in frame {self.frame_id!r}; services up"
            )
        except Exception:
            self.get_logger().error(f"publishing the scene failed:\n{traceback.format_exc()}")

    def _scene_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        with self._scene_lock:
            if self._means is None:
                self._means = self.engine.scene.means.detach().cpu().numpy().astype(np.float64)
                self._colors = self.engine.scene_colors()
            return self._means, self._colors

    def check_ready(self) -> None:
        if self.engine is None:
            raise _NotStarted(f"not ready: start-up failed: {self._startup_error}")
        self.engine.check_ready()

    # -- helpers -----------------------------------------------------------------------------------
    def _header(self) -> Header:
        return Header(stamp=self.get_clock().now().to_msg(), frame_id=self.frame_id)

    def _serve(self, name: str, request, response, handler: Callable) -> object:
        """Run ``handler(request, response)``; every failure becomes success=false."""
        t0 = time.monotonic()
        try:
            self.check_ready()
            handler(request, response)
            response.success = True
        except GsbpError as exc:
            response = type(response)()
            response.success = False
            response.message = str(exc)
            self.get_logger().warning(f"{name}: {exc}")
        except Exception as exc:
            response = type(response)()
            response.success = False
            response.message = f"internal error: {type(exc).__name__}: {exc}"
            self.get_logger().error(f"{name}: internal error\n{traceback.format_exc()}")
        latency = time.monotonic() - t0
        if hasattr(response, "latency_s"):
            response.latency_s = float(latency)
        self._last_query = {
            "name": name,
            "latency_s": latency,
            "success": bool(response.success),
            "message": response.message,
        }
        return response

    def _fill_selection(self, response, sel: Selection) -> RegionGeometry:
        means, colors = self._scene_arrays()
        region = region_geometry(sel, means, colors, self.transform)
        header = self._header()
        response.header = header
        response.indices = uint32_array(region.indices)
        response.scores = float32_array(region.scores)
        response.cloud = region_cloud(region, header)
        response.summary = region.summary
        n = region.indices.size
        response.message = (
            f"{n} of {means.shape[0]} Gaussians" if n else f"no Gaussian matched {sel.name!r}"
        )
        self.segmented_pub.publish(response.cloud)
        return region

    def _grasps(self, selections, header: Header):
        """Grasps on the selections with the current parameters; ~/grasp_poses published."""
        values = read_grasp_parameters(self)
        result = plan_node_grasps(self.engine, selections, values, self.transform)
        msgs = grasp_messages(result, self.transform)
        if result.gripper is not None:
            self.grasp_pub.publish(grasp_pose_array(msgs, header))
        return result, msgs

    def _check_frame(self, frame_id: str) -> None:
        if frame_id and frame_id.lstrip("/") != self.frame_id.lstrip("/"):
            raise MessageError(
                f"points are in frame {frame_id!r} but this node works in {self.frame_id!r} "
                "(no tf lookup: send them in the node's frame_id)"
            )

    # -- services ----------------------------------------------------------------------------------
    def _on_segment(self, request, response):
        def handle(req, res) -> None:
            sel = self.engine.segment_text(
                list(req.positive), list(req.negative), float(req.threshold)
            )
            self._fill_selection(res, sel)
            grasps, res.grasps = self._grasps([sel], res.header)
            res.message = "; ".join(m for m in (res.message, grasps.note) if m)

        return self._serve("segment", request, response, handle)

    def _segment_points(self, req, res, threshold: float) -> None:
        """A SegmentPoints request (points in the node's frame) -> its response."""
        self._check_frame(req.header.frame_id)
        pos = self.transform.inverse_points(points_to_numpy(req.positive))
        neg = self.transform.inverse_points(points_to_numpy(req.negative))
        self._fill_selection(res, self.engine.segment_points(pos, neg, threshold))

    def _on_segment_points(self, request, response):
        def handle(req, res) -> None:
            self._segment_points(req, res, float(req.threshold))

        return self._serve("segment_points", request, response, handle)

    def _on_transfer(self, request, response):
        def handle(req, res) -> None:
            masks = [image_to_mask(m, f"source_masks[{i}]") for i, m in enumerate(req.source_masks)]
            images = [
                image_to_rgb(m, f"source_images[{i}]") for i, m in enumerate(req.source_images)
            ]
            poses, infos = list(req.source_poses), list(req.source_camera_infos)
            cameras = None
            if poses or infos:
                if not (len(poses) == len(infos) == len(masks)):
                    raise MessageError(
                        "lift-with-poses needs one source pose and one camera info per mask: "
                        f"got {len(poses)} poses, {len(infos)} camera infos, {len(masks)} masks"
                    )
                cameras = [
                    camera_from_info_pose(info, pose, self.transform, name=f"source_{i}")
                    for i, (info, pose) in enumerate(zip(infos, poses))
                ]
            labelling = self.engine.transfer_affordance(
                images, masks, list(req.labels), int(req.k), cameras
            )
            means, colors = self._scene_arrays()
            header = self._header()
            regions = labelling_regions(labelling, means, colors, self.transform)
            res.header = header
            res.regions = [region_to_msg(r, header) for r in regions]
            self.affordance_pub.publish(labelling_cloud(labelling, means, self.transform, header))
            to_grasp = set(self.get_parameter("grasp_labels").value or [])
            grasps, res.grasps = self._grasps(
                [r for r in labelling.regions if r.name in to_grasp], header
            )
            markers = region_markers(
                regions, header, point_size=float(self.get_parameter("marker_scale").value)
            )
            markers.markers += gripper_markers(grasps, self.transform, header)
            self.markers_pub.publish(markers)
            counts = ", ".join(f"{r.name}: {r.indices.size}" for r in regions)
            mode = "lift-with-poses" if cameras is not None else f"kNN (k={req.k})"
            res.message = "; ".join(m for m in (f"{mode}: {counts}", grasps.note) if m)

        return self._serve("transfer_affordance", request, response, handle)

    def _on_save(self, request, response):
        def handle(req, res) -> None:
            sel = None
            if len(req.indices):
                idx = np.unique(np.asarray(req.indices, dtype=np.int64))
                sel = Selection("request", idx, np.ones(idx.size, np.float32))
            path, count = self.engine.save_region(
                req.path, selection=sel, complement=bool(req.complement)
            )
            res.path = path
            res.count = int(count)
            what = "complement of the " if req.complement else ""
            src = "given indices" if sel is not None else "last selection"
            res.message = f"wrote {count} Gaussians ({what}{src}) to {path}"

        return self._serve("save_region", request, response, handle)

    # -- topics ------------------------------------------------------------------------------------
    def _on_clicked_point(self, msg: PointStamped) -> None:
        request = SegmentPoints.Request()
        request.header = msg.header
        request.positive = [msg.point]
        threshold = float(self.get_parameter("clicked_point_threshold").value)

        def handle(req, res) -> None:
            self._segment_points(req, res, threshold)

        response = self._serve("clicked_point", request, SegmentPoints.Response(), handle)
        if response.success:  # (_serve has logged a failure)
            self.get_logger().info(f"/clicked_point: {response.message}")

    def diagnostics(self) -> DiagnosticArray:
        """The node's state as one DiagnosticStatus."""
        if self.engine is None:
            state, message = "failed", f"start-up failed: {self._startup_error}"
            st = None
        else:
            st = self.engine.status()
            state, message = st.state, st.message
        level = {
            "ready": DiagnosticStatus.OK,
            "failed": DiagnosticStatus.ERROR,
        }.get(state, DiagnosticStatus.WARN)
        if state == "backprojecting" and st is not None:
            message = f"back-projecting {st.views_done}/{st.views_total} views"
        kv = {"state": state, "frame_id": self.frame_id, "scene_path": self.values["scene_path"]}
        if st is not None:
            kv.update(
                {
                    "num_gaussians": str(st.num_gaussians),
                    "views_done": str(st.views_done),
                    "views_total": str(st.views_total),
                    "eta_s": "" if st.eta_s is None else f"{st.eta_s:.1f}",
                    "active_sources": ",".join(st.active_sources),
                    "inactive_sources": "; ".join(
                        f"{k}: {v}" for k, v in st.inactive_sources.items()
                    ),
                    "startup_s": "" if st.startup_s is None else f"{st.startup_s:.2f}",
                    "cache_hit": str(bool(st.cache_hit)).lower(),
                }
            )
        q = self._last_query
        kv.update(
            {
                "last_query": str(q.get("name", "")),
                "last_query_latency_s": f"{q['latency_s']:.3f}" if q else "",
                "last_query_success": str(q.get("success", "")).lower(),
            }
        )
        status = DiagnosticStatus(
            level=level,
            name=f"{self.get_fully_qualified_name()}: feature field",
            message=message,
            hardware_id=self.values["scene_path"],
            values=[KeyValue(key=k, value=v) for k, v in kv.items()],
        )
        return DiagnosticArray(header=self._header(), status=[status])

    def _publish_diagnostics(self) -> None:
        try:
            self.diag_pub.publish(self.diagnostics())
        except Exception:
            self.get_logger().error(f"diagnostics failed:\n{traceback.format_exc()}")


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=sys.argv if args is None else args)
    node = None
    try:
        node = GsbpNode()
        executor = MultiThreadedExecutor(num_threads=4)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    code = main()
    # Shut down cleanly above; now skip the interpreter's teardown, which can abort
    # ("terminate called without an active exception") while the start-up thread is still
    # inside torch or while middleware threads are destroyed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
