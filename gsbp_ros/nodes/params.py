"""The node's parameters: ONE table, declared from here, mirrored by config/gsbp.yaml and the
launch file's arguments (test/ros/test_params.py checks that all three agree).

Every parameter always has a value, so ``ros2 param dump`` and GetParameters of every name
answer in full (rclpy answers a whole GetParameters request with an EMPTY list when one of
the names is declared but unset). Two consequences of how ROS 2 reads parameter files and
``-p`` overrides:

- ``[]`` there means "not set" (rcl's YAML parser gives no type to an empty list), so an empty
  list cannot be given: ``[]`` reads as the default. String lists whose default is empty hold
  the one-element list ``[""]``, which reads as empty (:data:`EMPTY_STRINGS`); write ``[""]``
  to empty any string list (e.g. ``feature_sources``). ``cameras_transform`` defaults to the
  identity (= no transform).
- A value of the wrong type (``1`` for a double, a string for a number) would make rclpy
  raise at declaration; here an integer is taken for a double (and integer lists for double
  lists), anything else keeps the default and is reported: the configure transition fails
  with a message that names the parameter.

``read_only`` parameters are read when the node configures: they may change only while the
node is unconfigured (``cleanup`` first), so that the next ``configure`` uses them. The others
may change at any time. Both kinds pass :func:`check_value` first.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gsbp_ros.errors import GsbpError


class ParameterError(GsbpError):
    """A parameter has an invalid value."""


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    type: str  # string | string_array | integer | double | double_array | bool
    description: str
    read_only: bool = True  # read at configure; may change only while unconfigured


#: A string list parameter holding this reads as the empty list (see the module docstring).
EMPTY_STRINGS = [""]
#: Row-major 4x4 identity: ``cameras_transform``'s default, meaning "no transform".
IDENTITY_4X4 = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]


PARAMS: tuple[Param, ...] = (
    # -- lifecycle --
    Param(
        "autostart",
        True,
        "bool",
        "Walk through configure and activate at start-up; false = wait for a lifecycle "
        "manager's transitions (lifecycle_msgs/ChangeState on ~/change_state). Read once "
        "at process start.",
    ),
    # -- scene and views (read at configure) --
    Param(
        "scene_path",
        "",
        "string",
        "3D Gaussian Splatting scene: Inria-format .ply, antimatter15 .splat or gsplat "
        "checkpoint (.pt/.pth/.ckpt), or a training output folder (Inria: highest "
        "point_cloud/iteration_N; splatfacto export with dataparser_transforms.json); "
        "required ('' = not set: configure fails and says so).",
    ),
    Param(
        "cameras_path",
        "",
        "string",
        "Views to back-project: COLMAP model folder (sparse/0), nerfstudio transforms.json, "
        "Blender transforms_train.json or Inria cameras.json; empty = the camera file next "
        "to the scene, else orbit views; 'orbit' = orbit views generated around the scene.",
    ),
    Param(
        "cameras_transform",
        IDENTITY_4X4,
        "double_array",
        "Row-major 4x4 similarity applied to the loaded camera poses (16 numbers; the "
        "identity = none), e.g. the transform of a gsplat checkpoint trained with "
        "normalize_world_space=True.",
    ),
    Param(
        "images_dir",
        "",
        "string",
        "Photos of the cameras as DINOv2/CLIP input, matched by image name (a camera "
        "without one uses its render); empty = found next to the cameras (COLMAP images/, "
        "the paths of transforms.json, Inria cfg_args); 'none' = renders only.",
    ),
    Param("device", "auto", "string", "Torch device: auto, cpu or cuda (or cuda:N)."),
    Param(
        "feature_sources",
        ["dinov2", "clip", "labels"],
        "string_array",
        "2D feature sources to back-project; a source that cannot load (no weights, no "
        "label maps) is reported inactive in /diagnostics and the others still run.",
    ),
    Param(
        "dinov2_model",
        "facebook/dinov2-small",
        "string",
        "DINOv2 model: a local folder (save_pretrained) or a Hugging Face id in the local cache.",
    ),
    Param(
        "clip_model",
        "openai/clip-vit-base-patch16",
        "string",
        "CLIP model for text segmentation: a local folder or a cached Hugging Face id.",
    ),
    Param(
        "allow_downloads",
        False,
        "bool",
        "Let Hugging Face ids that are not in the local cache download; off = models load "
        "from local folders or the cache only, and a missing one is reported at once.",
    ),
    Param(
        "label_maps_dir",
        "",
        "string",
        "Folder of per-view label maps <image stem>.png|.npy for the 'labels' source.",
    ),
    Param(
        "label_names",
        EMPTY_STRINGS,
        "string_array",
        "Names of the label map values 1..L for the 'labels' source (value v -> names[v-1]); "
        '[""] = none.',
    ),
    Param(
        "label_unlabelled",
        "background",
        "string",
        "What unlabelled (0) label-map pixels vote for: background (an implicit background "
        "label: an object wins only where it dominates; right for maps of a few objects) or "
        "ignore (no vote: right when the labels cover the scene and gaps mean unknown).",
    ),
    Param(
        "cache_dir",
        "",
        "string",
        "Feature-field cache folder (safetensors keyed by scene, views, models); empty = none.",
    ),
    Param("max_views", 0, "integer", "Use at most this many views, spread evenly; 0 = all."),
    Param("render_scale", 1.0, "double", "Render the views at this fraction of their size."),
    Param(
        "num_generated_views",
        24,
        "integer",
        "Number of orbit views generated when no camera file is found next to the scene "
        "(or cameras_path is 'orbit').",
    ),
    Param(
        "generated_view_size",
        256,
        "integer",
        "Width and height in pixels of the generated orbit views.",
    ),
    Param(
        "mode",
        "expected",
        "string",
        "Back-projection: expected (weighted mean) or accumulated (weighted sum).",
    ),
    Param(
        "feature_input_size",
        448,
        "integer",
        "Input size in pixels of the feature models (DINOv2 / CLIP).",
    ),
    Param(
        "raster_engine",
        "auto",
        "string",
        "Rasteriser for view weights: auto (gsplat on CUDA, numba on the CPU), numba, "
        "gsplat or torch (plain PyTorch, any device).",
    ),
    Param(
        "rasterize_mode",
        "classic",
        "string",
        "classic, or antialiased for scenes trained with gsplat's antialiased mode "
        "(opacity compensation).",
    ),
    Param("eps2d", 0.3, "double", "2D low-pass added to each projected covariance (gsplat)."),
    Param("near_plane", 0.01, "double", "Gaussians nearer than this to a camera are culled."),
    Param("far_plane", 1e10, "double", "Gaussians farther than this from a camera are culled."),
    Param(
        "max_pairs",
        0,
        "integer",
        "Memory bound of the raster engine: (Gaussian, pixel) pairs held at once per view; "
        "0 = the engine's default (~16M pairs, ~200 MB).",
    ),
    Param(
        "canonical_negatives",
        True,
        "bool",
        "Text segmentation with no negatives compares against generic negatives "
        "(object, things, stuff, texture).",
    ),
    Param(
        "output_dir",
        "/tmp/gsbp",
        "string",
        "SaveRegion writes only below this folder; relative request paths start here.",
    ),
    # -- frames --
    Param("frame_id", "map", "string", "Frame of every published cloud, marker and response."),
    Param(
        "scene_to_frame.translation",
        [0.0, 0.0, 0.0],
        "double_array",
        "Translation t of the scene-to-frame similarity p_frame = s * R p_scene + t.",
    ),
    Param(
        "scene_to_frame.rotation",
        [0.0, 0.0, 0.0, 1.0],
        "double_array",
        "Rotation R of the scene-to-frame similarity as a quaternion [x, y, z, w].",
    ),
    Param(
        "scene_to_frame.scale",
        1.0,
        "double",
        "Scale s of the scene-to-frame similarity (frame units per scene unit).",
    ),
    # -- requests and output (may change at run time) --
    Param(
        "default_k",
        5,
        "integer",
        "Suggested k (neighbours) for TransferAffordance kNN requests; requests must set k >= 1.",
        read_only=False,
    ),
    Param(
        "clicked_point_threshold",
        0.0,
        "double",
        "Extra score threshold (0 = none) of the point segmentation run for each "
        "/clicked_point; without it a click selects what resembles the clicked Gaussians "
        "more than the scene's mean feature.",
        read_only=False,
    ),
    Param(
        "publish_scene_cloud",
        True,
        "bool",
        "Publish the whole scene (x y z rgb) on ~/scene_cloud at each activation (a change "
        "takes effect at the next activation).",
        read_only=False,
    ),
    Param(
        "marker_scale",
        0.01,
        "double",
        "Point size and line width of the markers, in frame units.",
        read_only=False,
    ),
    Param(
        "diagnostics_period",
        1.0,
        "double",
        "Seconds between /diagnostics messages (wall-clock time, also under use_sim_time).",
        read_only=False,
    ),
    # -- bounds of one request (gsbp_ros.limits; may change at any time) --
    Param(
        "max_points",
        1000,
        "integer",
        "Most point prompts (positive + negative) in one SegmentPoints request; 0 = no bound.",
        read_only=False,
    ),
    Param(
        "max_prompts",
        32,
        "integer",
        "Most text prompts (positive + negative) in one Segment request; 0 = no bound.",
        read_only=False,
    ),
    Param(
        "max_prompt_chars",
        200,
        "integer",
        "Most characters in one text prompt; 0 = no bound.",
        read_only=False,
    ),
    Param(
        "max_labels",
        32,
        "integer",
        "Most labels in one TransferAffordance request; 0 = no bound.",
        read_only=False,
    ),
    Param(
        "max_request_pixels",
        8000000,
        "integer",
        "Most pixels of all images and masks of one TransferAffordance request; 0 = no bound.",
        read_only=False,
    ),
    Param(
        "max_k",
        64,
        "integer",
        "Largest k of a TransferAffordance kNN request; 0 = no bound.",
        read_only=False,
    ),
    Param(
        "point_margin",
        0.5,
        "double",
        "A point prompt farther than this from every Gaussian is refused, with its distance "
        "(scene units; 0 = no check).",
        read_only=False,
    ),
    # -- grasps (gsbp_ros/grasps/; lengths in frame_id units; may change at run time) --
    Param(
        "max_grasps",
        10,
        "integer",
        "Ranked grasps per Segment / TransferAffordance response and on ~/grasp_poses; "
        "0 = no grasp planning.",
        read_only=False,
    ),
    Param(
        "grasp_labels",
        ["grasp"],
        "string_array",
        "TransferAffordance labels whose regions get grasps.",
        read_only=False,
    ),
    *(
        Param(f"gripper.{name}", default, "double", text, read_only=False)
        for name, default, text in (
            ("max_opening", 0.08, "Largest distance between the fingers' inner faces."),
            ("finger_length", 0.05, "Fingertip to palm, along the approach."),
            ("finger_width", 0.02, "Finger size across the closing direction."),
            ("finger_thickness", 0.01, "Finger size along the closing direction."),
            ("palm_depth", 0.04, "Palm size along the approach, behind the fingers."),
            ("clearance", 0.005, "Free space kept between each open finger and the object."),
            ("approach_distance", 0.05, "Length behind the palm checked for free approach."),
        )
    ),
)

PARAMS_BY_NAME = {p.name: p for p in PARAMS}


def _ros_type(kind: str):
    from rclpy.parameter import Parameter

    return {
        "string": Parameter.Type.STRING,
        "string_array": Parameter.Type.STRING_ARRAY,
        "integer": Parameter.Type.INTEGER,
        "double": Parameter.Type.DOUBLE,
        "double_array": Parameter.Type.DOUBLE_ARRAY,
        "bool": Parameter.Type.BOOL,
    }[kind]


_TYPE_WORDS = {
    "string": "a string",
    "string_array": "a list of strings",
    "integer": "an integer",
    "double": "a number (double)",
    "double_array": "a list of numbers",
    "bool": "true or false",
}


def descriptor(p: Param):
    """The ParameterDescriptor of ``p`` (statically typed; read-only is enforced by the node
    per lifecycle state, not by rclpy, so that ``read_only`` parameters can change while the
    node is unconfigured)."""
    from rcl_interfaces.msg import ParameterDescriptor

    when = (
        "read at configure: change it only while the node is unconfigured"
        if p.read_only
        else "may change at any time"
    )
    return ParameterDescriptor(
        name=p.name,
        type=_ros_type(p.type).value,
        description=p.description,
        additional_constraints=when,
    )


def initial_value(p: Param, override) -> tuple[Any, str, str]:
    """``(value, error, note)`` of parameter ``p`` from its override (an rclpy Parameter from
    the command line or a params file, or None): the value to declare, a reason when the
    override was refused (wrong type), a note when it was read in another way than written."""
    from rclpy.parameter import Parameter

    if override is None:
        return p.default, "", ""
    kind, value = override.type_, override.value
    if kind == Parameter.Type.NOT_SET:
        note = ""
        if p.type.endswith("_array") and p.default not in ([], EMPTY_STRINGS, IDENTITY_4X4):
            note = (
                f"{p.name}: [] reads as 'not set' in ROS 2 parameter files and -p, so the "
                f'default {p.default} is used; write [""] for an empty list'
            )
        return p.default, "", note
    want = _ros_type(p.type)
    if kind == want:
        return (list(value) if p.type.endswith("_array") else value), "", ""
    if want == Parameter.Type.DOUBLE and kind == Parameter.Type.INTEGER:
        return float(value), "", ""
    if want == Parameter.Type.DOUBLE_ARRAY and kind == Parameter.Type.INTEGER_ARRAY:
        return [float(v) for v in value], "", ""
    error = (
        f"{p.name} must be {_TYPE_WORDS[p.type]}, got {kind.name.lower()} {value!r} "
        "(params file or command line)"
    )
    return p.default, error, ""


def declare_parameters(node) -> tuple[list[str], list[str]]:
    """Declare every parameter of :data:`PARAMS` on ``node``, each with a value.

    Values come from the node's overrides (command line beats params file, as rcl merges
    them) else the table's default. Returns ``(errors, notes)``: one line per override that
    was refused (wrong type; the default is used and configure fails) or read otherwise.
    """
    # rclpy keeps the command line's and params files' values for this node here; reading
    # them first (instead of letting declare_parameter raise on a wrong type) lets one bad
    # value become a clear error rather than a crash.
    overrides = getattr(node, "_parameter_overrides", None)
    errors: list[str] = []
    notes: list[str] = []
    for p in PARAMS:
        if overrides is None:  # an rclpy without it: its own merging (wrong types raise)
            node.declare_parameter(p.name, p.default, descriptor(p))
            continue
        value, error, note = initial_value(p, overrides.get(p.name))
        errors += [error] if error else []
        notes += [note] if note else []
        node.declare_parameter(p.name, value, descriptor(p), ignore_override=True)
    return errors, notes


def read_parameters(node) -> dict[str, Any]:
    """Current values of every parameter in the table, as the engine reads them: lists as
    lists, and a string list equal to :data:`EMPTY_STRINGS` as ``[]``."""
    out: dict[str, Any] = {}
    for p in PARAMS:
        value = node.get_parameter(p.name).value
        if isinstance(value, (tuple, list)) or hasattr(value, "tolist"):
            value = list(value)
        if p.type == "string_array" and value == EMPTY_STRINGS:
            value = []
        out[p.name] = value
    return out


def engine_config(values: dict[str, Any]):
    """:class:`gsbp_ros.engine.EngineConfig` from the parameter values."""
    from gsbp_ros.engine import EngineConfig
    from gsbp_ros.raster.options import RasterOptions

    return EngineConfig(
        scene_path=values["scene_path"],
        cameras_path=values["cameras_path"],
        cameras_transform=_transform_or_none(values["cameras_transform"]),
        device=values["device"],
        feature_sources=list(values["feature_sources"]),
        dinov2_model=values["dinov2_model"],
        clip_model=values["clip_model"],
        label_maps_dir=values["label_maps_dir"],
        label_names=list(values["label_names"]),
        label_unlabelled=values["label_unlabelled"],
        cache_dir=values["cache_dir"],
        max_views=int(values["max_views"]),
        render_scale=float(values["render_scale"]),
        num_generated_views=int(values["num_generated_views"]),
        generated_view_size=int(values["generated_view_size"]),
        mode=values["mode"],
        feature_input_size=int(values["feature_input_size"]),
        output_dir=values["output_dir"],
        canonical_negatives=bool(values["canonical_negatives"]),
        default_k=int(values["default_k"]),
        engine=values["raster_engine"],
        raster=RasterOptions(
            near_plane=float(values["near_plane"]),
            far_plane=float(values["far_plane"]),
            eps2d=float(values["eps2d"]),
            rasterize_mode=values["rasterize_mode"],
        ),
        max_pairs=int(values["max_pairs"]),
        images_dir=values["images_dir"],
        allow_downloads=bool(values["allow_downloads"]),
    )


def _transform_or_none(values: list) -> list[float]:
    """16 numbers of a 4x4, or [] for the identity (no transform: the engine skips it)."""
    numbers = [float(v) for v in values]
    return [] if numbers == IDENTITY_4X4 else numbers


# Checks that need no engine: name -> (is the value valid?, what a valid value is).
_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "mode": (lambda v: v in ("expected", "accumulated"), "must be expected or accumulated"),
    "label_unlabelled": (lambda v: v in ("background", "ignore"), "must be background or ignore"),
    "raster_engine": (
        lambda v: v in ("auto", "numba", "gsplat", "torch"),
        "must be auto, numba, gsplat or torch",
    ),
    "rasterize_mode": (lambda v: v in ("classic", "antialiased"), "must be classic or antialiased"),
    "eps2d": (lambda v: 0.0 <= v < float("inf"), "must be >= 0"),
    "near_plane": (lambda v: 0.0 <= v < float("inf"), "must be >= 0"),
    "far_plane": (lambda v: 0.0 < v < float("inf"), "must be positive and finite"),
    "max_pairs": (lambda v: v >= 0, "must be >= 0 (0 = the engine's default)"),
    "cameras_transform": (lambda v: len(v) in (0, 16), "must be empty or 16 numbers (a 4x4)"),
    "render_scale": (lambda v: v > 0, "must be positive"),
    "frame_id": (lambda v: bool(v), "must not be empty"),
    "default_k": (lambda v: v >= 1, "must be at least 1"),
    "clicked_point_threshold": (lambda v: 0.0 <= v <= 1.0, "must lie in [0, 1] (0 = none)"),
    "marker_scale": (lambda v: v > 0, "must be positive"),
    "diagnostics_period": (lambda v: v > 0, "must be positive"),
    **{
        name: (lambda v: v >= 0, "must be >= 0 (0 = no bound)")
        for name in (
            "max_points",
            "max_prompts",
            "max_prompt_chars",
            "max_labels",
            "max_request_pixels",
            "max_k",
        )
    },
    "point_margin": (lambda v: 0.0 <= v < float("inf"), "must be >= 0 (0 = no check)"),
    "max_grasps": (lambda v: v >= 0, "must be at least 0 (0 = no grasps)"),
    **{
        p.name: (lambda v: math.isfinite(v) and v > 0, "must be a positive number")
        for p in PARAMS
        if p.name.startswith("gripper.")
    },
}


def check_value(name: str, value: Any) -> str:
    """'' when ``value`` is valid for parameter ``name``, else the reason (one line)."""
    ok, rule = _CHECKS.get(name, (lambda v: True, ""))
    try:
        good = bool(ok(value))
    except TypeError:  # a value of another type (rclpy checks types too)
        good = False
    return "" if good else f"{name} {rule}, got {value!r}"


def refusal(p: Param, state: str) -> str:
    """'' when parameter ``p`` may change in lifecycle state ``state``, else why not."""
    if p.read_only and state != "unconfigured":
        return (
            f"{p.name} is read when the node configures: change it while the node is "
            f"unconfigured (it is {state}: deactivate and clean up first)"
        )
    return ""


def validate(values: dict[str, Any]) -> None:
    """Checks of every parameter value at configure; raises :class:`ParameterError`."""
    for name in _CHECKS:
        reason = check_value(name, values[name])
        if reason:
            raise ParameterError(reason)
    if not str(values["scene_path"]).strip():
        raise ParameterError(
            "scene_path is not set: set the node parameter scene_path (launch argument "
            "scene_path:=...) to an Inria-format .ply or a gsplat checkpoint"
        )


def request_limits(node):
    """:class:`gsbp_ros.limits.RequestLimits` from the node's current parameters."""
    from gsbp_ros.limits import RequestLimits

    def get(name: str):
        return node.get_parameter(name).value

    return RequestLimits(
        max_points=int(get("max_points")),
        max_prompts=int(get("max_prompts")),
        max_prompt_chars=int(get("max_prompt_chars")),
        max_labels=int(get("max_labels")),
        max_request_pixels=int(get("max_request_pixels")),
        max_k=int(get("max_k")),
        point_margin=float(get("point_margin")),
    )
