"""The gsbp node: back-projected Gaussian features behind ROS 2 services, as a managed
(lifecycle) node. Executable: gsbp_ros/nodes/gsbp_node.py.

Lifecycle (lifecycle_msgs services ``~/change_state``, ``~/get_state``, ...):

    unconfigured --configure--> inactive --activate--> active
    active --deactivate--> inactive --cleanup--> unconfigured;  shutdown -> finalized

- configure: checks the parameters, loads the scene, back-projects the views (or loads the
  cached field). It is long: the node keeps answering meanwhile (``get_state`` says
  configuring, requests answer "not ready: configuring: back-projecting 12/40 views, ETA
  8 s"). A failure is a failed transition (the node stays unconfigured) with the reason in
  every answer, the log and /diagnostics.
- activate: publishes the scene cloud and serves requests. deactivate: stops serving.
- cleanup / shutdown: release the scene and the field; parameters read at configure may
  change while unconfigured.
- ``autostart`` (default true) walks configure + activate at start-up, so a plain launch
  gives a serving node; with ``autostart:=false`` a lifecycle manager drives it.

Services (names relative to the node; every response has success + message; they answer
success=false "not ready: <state>" unless active):
    ~/segment              gsbp_ros/srv/Segment              text prompts -> Gaussians
    ~/segment_points       gsbp_ros/srv/SegmentPoints        3D point prompts -> Gaussians
    ~/transfer_affordance  gsbp_ros/srv/TransferAffordance   annotated images -> regions
    ~/save_region          gsbp_ros/srv/SaveRegion           selection -> splat .ply
Topics (reliable, transient local, depth 1; lifecycle publishers: only while active):
    ~/scene_cloud (on activate), ~/segmented_cloud, ~/affordance_cloud: PointCloud2
    ~/affordance_markers: MarkerArray (regions; grippers of the grasps, namespace "grippers")
    ~/grasp_poses: PoseArray, the grasps of the last Segment / TransferAffordance, best first
/diagnostics (default QoS, depth 10, in every state): DiagnosticArray every
    diagnostics_period seconds of wall-clock time.
Subscribed: /clicked_point (geometry_msgs/PointStamped, RViz "Publish Point") -> a point
segmentation published on ~/segmented_cloud.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import traceback
from collections.abc import Callable

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped, PoseArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from gsbp_ros.errors import GsbpError
from gsbp_ros.limits import check_pixels
from gsbp_ros.nodes import health, signals
from gsbp_ros.nodes import params as P
from gsbp_ros.nodes.camera_msgs import camera_from_info_pose
from gsbp_ros.nodes.cloud_msgs import make_cloud
from gsbp_ros.nodes.errors import MessageError
from gsbp_ros.nodes.frame_msgs import SceneToFrame, points_to_numpy
from gsbp_ros.nodes.grasp_msgs import (
    grasp_messages,
    grasp_pose_array,
    gripper_markers,
    plan_node_grasps,
    read_grasp_parameters,
)
from gsbp_ros.nodes.image_msgs import image_to_mask, image_to_rgb
from gsbp_ros.nodes.marker_msgs import region_markers
from gsbp_ros.nodes.qos import LATCHED_QOS
from gsbp_ros.nodes.region_msgs import (
    RegionGeometry,
    float32_array,
    labelling_cloud,
    labelling_regions,
    region_cloud,
    region_geometry,
    region_to_msg,
    uint32_array,
)
from gsbp_ros.results import Selection
from gsbp_ros.srv import SaveRegion, Segment, SegmentPoints, TransferAffordance

SUCCESS = TransitionCallbackReturn.SUCCESS
FAILURE = TransitionCallbackReturn.FAILURE

#: Latched result topics (relative names; transient local): created at configure as lifecycle
#: publishers, so they publish only while active. Publish through GsbpNode.publish().
LATCHED_TOPICS = {
    "scene_cloud": PointCloud2,
    "segmented_cloud": PointCloud2,
    "affordance_cloud": PointCloud2,
    "affordance_markers": MarkerArray,
    "grasp_poses": PoseArray,
}


class _NotReady(GsbpError):
    pass


class GsbpNode(LifecycleNodeMixin, Node):
    """The ROS 2 front end of :class:`gsbp_ros.engine.GsbpEngine` (conversions only).

    rclpy's LifecycleNode, except that its lifecycle services sit in a reentrant callback
    group: ``get_state`` and the others answer while a long configure runs in another
    executor thread.
    """

    def __init__(self, *, node_name: str = "gsbp", **kwargs) -> None:
        Node.__init__(self, node_name, **kwargs)
        LifecycleNodeMixin.__init__(self, callback_group=ReentrantCallbackGroup())
        self._param_errors, notes = P.declare_parameters(self)
        for note in notes:
            self.get_logger().warning(note)
        for error in self._param_errors:
            self.get_logger().error(f"parameter refused: {error}; configure will fail")
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.values = P.read_parameters(self)  # as of the last configure
        self.frame_id: str = self.values["frame_id"] or "map"
        self.transform = SceneToFrame()
        self.engine = None
        self._failure = ""  # why the last configure failed
        self._transition_lock = threading.Lock()  # one transition at a time
        self._scene_lock = threading.Lock()
        self._means: np.ndarray | None = None  # [N, 3] scene frame
        self._colors: np.ndarray | None = None  # [N, 3] uint8
        self._last_query: dict[str, object] = {}
        self._publishers_by_name: dict[str, object] = {}

        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        def group() -> MutuallyExclusiveCallbackGroup:
            return MutuallyExclusiveCallbackGroup()

        for srv_type, name, handler in (
            (Segment, "~/segment", self._on_segment),
            (SegmentPoints, "~/segment_points", self._on_segment_points),
            (TransferAffordance, "~/transfer_affordance", self._on_transfer),
            (SaveRegion, "~/save_region", self._on_save),
        ):
            self.create_service(srv_type, name, handler, callback_group=group())
        self.create_subscription(
            PointStamped, "/clicked_point", self._on_clicked_point, 10, callback_group=group()
        )
        # Wall-clock timer: under use_sim_time without /clock a ROS-time timer never fires.
        self._diag_timer = self.create_timer(
            self.values["diagnostics_period"],
            self._publish_diagnostics,
            callback_group=group(),
            clock=Clock(clock_type=ClockType.STEADY_TIME),
        )
        self._guard_change_state()

    # -- lifecycle ---------------------------------------------------------------------------
    def lifecycle_state(self) -> str:
        """The current lifecycle state's label (a transition state while one runs)."""
        return self._state_machine.current_state[1]

    def transition_running(self) -> bool:
        return self._transition_lock.locked()

    def start_autostart(self) -> threading.Thread | None:
        """With ``autostart`` true: configure and activate in a background thread."""
        if not self.get_parameter("autostart").value:
            self.get_logger().info(
                "autostart is false: waiting for a lifecycle manager (configure, activate)"
            )
            return None
        thread = threading.Thread(target=self._autostart, name="gsbp-autostart", daemon=True)
        thread.start()
        return thread

    def _autostart(self) -> None:
        with self._transition_lock:
            if self.lifecycle_state() != "unconfigured" or self.trigger_configure() != SUCCESS:
                return
            self.trigger_activate()

    def _guard_change_state(self) -> None:
        """Refuse, with a log line saying why, a ChangeState request that is not available in
        the current state or that arrives while another transition runs (rclpy would answer
        success=false with a less clear message, or start two transitions at once)."""
        service = getattr(self, "_service_change_state", None)
        if service is None:  # enable_communication_interface=False
            return
        original = service.callback

        def guarded(request, response):
            asked = request.transition.label or str(request.transition.id)
            if not self._transition_lock.acquire(blocking=False):
                self.get_logger().warning(
                    f"transition {asked!r} refused: another transition is running "
                    f"(state {self.lifecycle_state()})"
                )
                response.success = False
                return response
            try:
                available = self._state_machine.available_transitions
                ids = {t[0] for t in available}
                labels = {t[1] for t in available}
                wanted = request.transition
                if (wanted.label and wanted.label not in labels) or (
                    not wanted.label and wanted.id not in ids
                ):
                    self.get_logger().warning(
                        f"transition {asked!r} refused in state {self.lifecycle_state()!r}; "
                        f"available: {', '.join(sorted(labels)) or 'none'}"
                    )
                    response.success = False
                    return response
                return original(request, response)
            finally:
                self._transition_lock.release()

        service.callback = guarded

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Check the parameters, load the scene, build the feature field (long)."""
        self._failure = ""
        try:
            result = self._configure()
        except Exception as exc:  # a bug: say so, and stay unconfigured
            self._failure = f"internal error: {type(exc).__name__}: {exc}"
            self.get_logger().error(f"configure failed:\n{traceback.format_exc()}")
            self._release()
            return FAILURE
        return super().on_configure(state) if result == SUCCESS else result

    def _configure(self) -> TransitionCallbackReturn:
        from gsbp_ros.engine import GsbpEngine  # torch: only when configuring

        self.values = P.read_parameters(self)
        try:
            if self._param_errors:
                raise P.ParameterError("; ".join(self._param_errors))
            P.validate(self.values)
            transform = SceneToFrame.from_params(
                self.values["scene_to_frame.translation"],
                self.values["scene_to_frame.rotation"],
                self.values["scene_to_frame.scale"],
            )
            engine = GsbpEngine(P.engine_config(self.values), logger=self.get_logger())
        except GsbpError as exc:
            self._failure = str(exc)
            self.get_logger().error(f"configure failed: {exc}")
            return FAILURE
        self.frame_id = self.values["frame_id"]
        self.transform = transform
        self.get_logger().info(f"configuring: scene {self.values['scene_path']!r}")
        self.get_logger().debug(f"parameters: {self.values}")
        self.engine = engine  # its status (progress, ETA) is visible from now on
        engine.start()  # blocking; failures end in state "failed" (logged), never raise
        status = engine.status()
        if status.state != "ready":
            self._failure = status.message
            self.engine = None
            return FAILURE
        for name, msg_type in LATCHED_TOPICS.items():
            self._publishers_by_name[name] = self.create_lifecycle_publisher(
                msg_type, f"~/{name}", LATCHED_QOS
            )
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enables the lifecycle publishers
        try:
            means, colors = self._scene_arrays()
            if self.get_parameter("publish_scene_cloud").value:
                cloud = make_cloud(self.transform.points(means), rgb=colors, header=self._header())
                self.publish("scene_cloud", cloud)
        except Exception:  # the scene cloud is a convenience: serve without it
            self.get_logger().error(f"publishing the scene failed:\n{traceback.format_exc()}")
        self.get_logger().info(
            f"active: {self.engine.scene.num_gaussians} Gaussians in frame "
            f"{self.frame_id!r}; services up"
        )
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().info("inactive: requests answer 'not ready' until activated")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("unconfigured: scene and feature field released")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("finalized")
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_error(state)

    def _release(self) -> None:
        for pub in self._publishers_by_name.values():
            self.destroy_lifecycle_publisher(pub)
        self._publishers_by_name.clear()
        with self._scene_lock:
            self.engine = None
            self._means = self._colors = None
        torch = sys.modules.get("torch")  # give cached GPU memory back (no-op on CPU)
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- parameters --------------------------------------------------------------------------
    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Changes pass the start-up checks; parameters read at configure change only while
        unconfigured. (rclpy has checked the types already.)"""
        state = self.lifecycle_state()
        reasons = []
        for p in params:
            spec = P.PARAMS_BY_NAME.get(p.name)
            if spec is None:  # use_sim_time and the like
                continue
            reason = P.refusal(spec, state) or P.check_value(p.name, p.value)
            if reason:
                reasons.append(reason)
        if reasons:
            return SetParametersResult(successful=False, reason="; ".join(reasons))
        names = {p.name for p in params}
        self._param_errors = [e for e in self._param_errors if e.split(" ", 1)[0] not in names]
        for p in params:
            if p.name == "diagnostics_period":
                self._diag_timer.timer_period_ns = int(float(p.value) * 1e9)
        return SetParametersResult(successful=True)

    # -- helpers -----------------------------------------------------------------------------
    def health(self) -> health.Health:
        engine = self.engine
        return health.Health(
            lifecycle=self.lifecycle_state(),
            failure=self._failure,
            engine=engine.status() if engine is not None else None,
            params=self.values,
        )

    def _scene_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        with self._scene_lock:
            if self.engine is None:
                raise _NotReady("not ready: no scene loaded")
            if self._means is None:
                self._means = self.engine.scene.means.detach().cpu().numpy().astype(np.float64)
                self._colors = self.engine.scene_colors()
            return self._means, self._colors

    def _header(self) -> Header:
        return Header(stamp=self.get_clock().now().to_msg(), frame_id=self.frame_id)

    def publish(self, topic: str, msg) -> None:
        """Publish on one of :data:`LATCHED_TOPICS`: the one place results go out (lifecycle
        publishers drop messages unless the node is active)."""
        pub = self._publishers_by_name.get(topic)
        if pub is not None:
            pub.publish(msg)

    def _serve(self, name: str, request, response, handler: Callable) -> object:
        """Run ``handler(request, response)`` when active; every failure becomes
        success=false with the reason. The one place where responses get their status."""
        t0 = time.monotonic()
        reason = health.not_ready(self.health())
        try:
            if reason:
                raise _NotReady(reason)
            self.engine.limits = P.request_limits(self)  # parameters may change at any time
            handler(request, response)
            response.success = True
        except _NotReady as exc:
            response = type(response)()
            response.success = False
            response.message = str(exc)
            self.get_logger().debug(f"{name}: {exc}")
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
        if not reason:
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
        self.publish("segmented_cloud", response.cloud)
        return region

    def _grasps(self, selections, header: Header):
        """Grasps on the selections with the current parameters; ~/grasp_poses published."""
        values = read_grasp_parameters(self)
        result = plan_node_grasps(self.engine, selections, values, self.transform)
        msgs = grasp_messages(result, self.transform)
        if result.gripper is not None:
            self.publish("grasp_poses", grasp_pose_array(msgs, header))
        return result, msgs

    def _check_frame(self, frame_id: str) -> None:
        if frame_id and frame_id.lstrip("/") != self.frame_id.lstrip("/"):
            raise MessageError(
                f"points are in frame {frame_id!r} but this node works in {self.frame_id!r} "
                "(no tf lookup: send them in the node's frame_id)"
            )

    # -- services ----------------------------------------------------------------------------
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
            # Before converting anything: the images' size from their headers.
            check_pixels(
                [(m.height, m.width) for m in [*req.source_images, *req.source_masks]],
                self.engine.limits,
            )
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
            self.publish(
                "affordance_cloud", labelling_cloud(labelling, means, self.transform, header)
            )
            to_grasp = set(read_grasp_parameters(self)["grasp_labels"])
            grasps, res.grasps = self._grasps(
                [r for r in labelling.regions if r.name in to_grasp], header
            )
            markers = region_markers(
                regions, header, point_size=float(self.get_parameter("marker_scale").value)
            )
            markers.markers += gripper_markers(grasps, self.transform, header)
            self.publish("affordance_markers", markers)
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
                req.path,
                selection=sel,
                complement=bool(req.complement),
                overwrite=bool(req.overwrite),
            )
            res.path = path
            res.count = int(count)
            what = "complement of the " if req.complement else ""
            src = "given indices" if sel is not None else "last selection"
            res.message = f"wrote {count} Gaussians ({what}{src}) to {path}"

        return self._serve("save_region", request, response, handle)

    # -- topics ------------------------------------------------------------------------------
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
        """The node's state as one DiagnosticStatus (see gsbp_ros.nodes.health)."""
        status = health.diagnostic_status(
            self.health(),
            name=f"{self.get_fully_qualified_name()}: feature field",
            last_query=self._last_query,
        )
        return DiagnosticArray(header=self._header(), status=[status])

    def _publish_diagnostics(self) -> None:
        try:
            self.diag_pub.publish(self.diagnostics())
        except Exception:
            self.get_logger().error(f"diagnostics failed:\n{traceback.format_exc()}")


def run(args: list[str]) -> int:
    """Init rclpy, spin the node until SIGINT / SIGTERM (then exit code 0), clean up."""
    try:
        rclpy.init(args=args)
    except Exception as exc:  # malformed --ros-args (rclpy's RCLError)
        print(f"gsbp_node: error: {exc}", file=sys.stderr)
        return 2
    node = None
    try:
        node = GsbpNode()
        executor = MultiThreadedExecutor(num_threads=6)
        executor.add_node(node)
        signals.graceful()
        node.start_autostart()
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():  # not a shutdown that interrupted the construction
            traceback.print_exc()
            return 1
    finally:
        # A configure still running holds the state machine: leave it to the exit.
        if node is not None and not node.transition_running():
            with contextlib.suppress(Exception):
                node.destroy_node()
        rclpy.try_shutdown()
    return 0
