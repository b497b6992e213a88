"""config/gsbp.yaml == the parameter table == the launch file's arguments."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import yaml

from gsbp_ros.errors import GsbpError
from gsbp_ros.nodes.params import (
    EMPTY_STRINGS,
    IDENTITY_4X4,
    PARAMS,
    PARAMS_BY_NAME,
    check_value,
    engine_config,
    initial_value,
    refusal,
    validate,
)

ROOT = Path(__file__).resolve().parents[2]


def flatten_yaml(params: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (how ROS names nested YAML parameters)."""
    out: dict = {}
    for k, v in params.items():
        if isinstance(v, dict):
            out.update(flatten_yaml(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _yaml_params() -> dict:
    doc = yaml.safe_load((ROOT / "config" / "gsbp.yaml").read_text())
    assert list(doc) == ["/**"], "parameters live under the /** wildcard (any node name)"
    return flatten_yaml(doc["/**"]["ros__parameters"])


def test_yaml_equals_table():
    values = _yaml_params()
    assert list(values) == [p.name for p in PARAMS], "same names, same order"
    for p in PARAMS:
        v = values[p.name]
        assert v == p.default, p.name
        # same types as declared (an int in the YAML for a double parameter would be
        # rejected by rclpy at start-up)
        kinds = {
            "string": str,
            "string_array": list,
            "integer": int,
            "double": float,
            "double_array": list,
            "bool": bool,
        }
        assert isinstance(v, kinds[p.type]), p.name
        if p.type == "double_array":
            assert all(isinstance(x, float) for x in v), p.name
        if p.type == "integer":
            assert not isinstance(v, bool), p.name


def _launch_file() -> ast.Module:
    return ast.parse((ROOT / "launch" / "gsbp.launch.py").read_text())


def _module_constant(tree: ast.Module, name: str):
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == name:
            return ast.literal_eval(node.value)
    raise AssertionError(f"launch file has no {name}")


def _dict_keys(tree: ast.Module, name: str) -> set[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == name:
            return {ast.literal_eval(k) for k in node.value.keys}
    raise AssertionError(f"no {name}")


def _literal_launch_arguments(tree: ast.Module) -> dict[str, object]:
    """DeclareLaunchArgument("name", default_value=..., description=...) written out."""
    args: dict[str, object] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", "")) == "DeclareLaunchArgument"
            and isinstance(node.args[0], ast.Constant)
        ):
            kw = {k.arg: k.value for k in node.keywords}
            try:
                default = ast.literal_eval(kw["default_value"])
            except ValueError:
                default = ast.unparse(kw["default_value"])  # a computed path
            args[node.args[0].value] = default
            assert "description" in kw, f"launch argument {node.args[0].value} has no description"
    return args


def test_launch_arguments_match_table_and_yaml():
    """Arguments named like parameters exist in the table and default to "keep the params
    file's value" (so a given value always wins, also one equal to a default); the others
    are the usual ROS ones."""
    tree = _launch_file()
    param_args = _module_constant(tree, "PARAM_ARGUMENTS")
    assert set(param_args) == {"scene_path", "cameras_path", "device", "autostart"}
    assert set(param_args) <= set(PARAMS_BY_NAME)
    sentinel = _module_constant(tree, "FROM_PARAMS_FILE")
    yaml_values = _yaml_params()
    for name in param_args:  # no value of the parameter can be mistaken for the marker
        assert str(PARAMS_BY_NAME[name].default) != sentinel
        assert yaml_values[name] == PARAMS_BY_NAME[name].default, name
    args = _literal_launch_arguments(tree)
    assert set(args) == {"params_file", "namespace", "log_level", "rviz"}
    assert "gsbp.yaml" in str(args["params_file"])
    assert args["namespace"] == "" and args["log_level"] == "info" and args["rviz"] == "false"


def test_table_is_well_formed_and_builds_engine_config():
    names = [p.name for p in PARAMS]
    assert len(names) == len(set(names))
    for p in PARAMS:
        assert p.description.strip(), p.name
    required = {
        "scene_path",
        "cameras_path",
        "device",
        "feature_sources",
        "dinov2_model",
        "clip_model",
        "label_maps_dir",
        "label_names",
        "cache_dir",
        "frame_id",
        "scene_to_frame.translation",
        "scene_to_frame.rotation",
        "scene_to_frame.scale",
        "max_views",
        "render_scale",
        "num_generated_views",
        "mode",
        "output_dir",
        "default_k",
        "publish_scene_cloud",
        "diagnostics_period",
    }
    assert required <= set(names)
    pytest.importorskip("gsbp_ros.engine")
    cfg = engine_config(_defaults_as_read())
    from gsbp_ros.engine import EngineConfig

    defaults = EngineConfig(scene_path="")
    # Every engine setting that has a parameter gets the engine's own default.
    for f in dataclasses.fields(EngineConfig):
        assert getattr(cfg, f.name) == getattr(defaults, f.name), f.name


def _defaults_as_read() -> dict:
    """The defaults as read_parameters returns them ([""] string lists read as [])."""
    return {p.name: [] if p.default == EMPTY_STRINGS else p.default for p in PARAMS}


def test_checks_reject_bad_values_with_a_reason():
    defaults = {**_defaults_as_read(), "scene_path": "scene.ply"}
    validate(defaults)  # the defaults are valid, with a scene
    assert all(check_value(p.name, p.default) == "" for p in PARAMS)
    with pytest.raises(GsbpError, match=r"^scene_path is not set: set the node parameter"):
        validate({**defaults, "scene_path": ""})
    bad = {
        "mode": "median",
        "render_scale": 0.0,
        "frame_id": "",
        "default_k": 0,
        "clicked_point_threshold": 1.5,
        "marker_scale": float("nan"),
        "diagnostics_period": -1.0,
    }
    for name, value in bad.items():
        reason = check_value(name, value)
        assert reason.startswith(f"{name} must") and repr(value) in reason, reason
        with pytest.raises(GsbpError, match=f"^{name} must"):
            validate({**defaults, name: value})


def test_rviz_config_shows_what_the_node_publishes():
    """RViz subscribes to the node's latched topics with matching QoS (RViz can't run here)."""
    import yaml

    root = Path(__file__).resolve().parents[2]
    node_src = (root / "gsbp_ros" / "nodes" / "node.py").read_text()
    latched = _dict_keys(ast.parse(node_src), "LATCHED_TOPICS")
    assert {"scene_cloud", "segmented_cloud", "affordance_cloud", "affordance_markers"} <= latched
    assert '"/clicked_point"' in node_src
    rviz = yaml.safe_load((root / "config" / "gsbp.rviz").read_text())
    displays = rviz["Visualization Manager"]["Displays"]
    topics = {}
    for d in displays:
        if "Topic" in d:
            topics[d["Topic"]["Value"]] = d["Topic"]
    for name in latched:
        qos = topics[f"/gsbp/{name}"]
        assert qos["Durability Policy"] == "Transient Local", name
        assert qos["Reliability Policy"] == "Reliable", name
    tools = rviz["Visualization Manager"]["Tools"]
    assert any(t.get("Topic", {}).get("Value") == "/clicked_point" for t in tools)
    assert rviz["Visualization Manager"]["Global Options"]["Fixed Frame"] == "map"


def _override(value):
    from rclpy.parameter import Parameter

    return Parameter("x", value=value)


def test_overrides_are_typed_as_the_table_says():
    """What the command line / params file gives becomes the declared value: the same type
    as is, integers for doubles as doubles, [] (rcl: not set) as the default, anything else
    refused with a message naming the parameter (the default stays; configure fails)."""
    pytest.importorskip("rclpy")
    from rclpy.parameter import Parameter

    p = PARAMS_BY_NAME
    assert initial_value(p["render_scale"], None) == (1.0, "", "")
    assert initial_value(p["render_scale"], _override(0.5)) == (0.5, "", "")
    value, error, _ = initial_value(p["render_scale"], _override(2))
    assert value == 2.0 and isinstance(value, float) and not error
    value, error, _ = initial_value(p["scene_to_frame.translation"], _override([1, 2, 3]))
    assert value == [1.0, 2.0, 3.0] and all(isinstance(v, float) for v in value) and not error
    value, error, _ = initial_value(p["render_scale"], _override("abc"))
    assert value == 1.0
    assert error == "render_scale must be a number (double), got string 'abc' " + (
        "(params file or command line)"
    )
    value, error, _ = initial_value(p["max_views"], _override(2.5))
    assert value == 0 and error.startswith("max_views must be an integer, got double 2.5")
    not_set = Parameter("x", Parameter.Type.NOT_SET)
    assert initial_value(p["label_names"], not_set) == (EMPTY_STRINGS, "", "")
    assert initial_value(p["cameras_transform"], not_set) == (IDENTITY_4X4, "", "")
    value, error, note = initial_value(p["feature_sources"], not_set)
    assert value == ["dinov2", "clip", "labels"] and not error
    assert note.startswith("feature_sources: [] reads as 'not set'") and '[""]' in note
    assert initial_value(p["scene_path"], _override(""))[0] == ""


def test_empty_markers_read_as_empty():
    """[""] string lists and the identity cameras_transform reach the engine as 'none'."""
    cfg = engine_config(_defaults_as_read())
    assert cfg.label_names == [] and cfg.cameras_transform == []
    moved = [*IDENTITY_4X4[:3], 2.0, *IDENTITY_4X4[4:]]
    assert engine_config({**_defaults_as_read(), "cameras_transform": moved}).cameras_transform == (
        moved
    )


def test_parameters_read_at_configure_change_only_while_unconfigured():
    for state in ("inactive", "active", "configuring", "finalized"):
        reason = refusal(PARAMS_BY_NAME["scene_path"], state)
        assert reason.startswith("scene_path is read when the node configures") and state in reason
    assert refusal(PARAMS_BY_NAME["scene_path"], "unconfigured") == ""
    for name in ("marker_scale", "default_k", "clicked_point_threshold", "diagnostics_period"):
        assert not PARAMS_BY_NAME[name].read_only
        assert refusal(PARAMS_BY_NAME[name], "active") == ""


def test_docs_parameter_table_equals_the_table():
    """docs/ros.md's parameter table says what params.py declares: name, type, default, when
    it may change, description (users read the doc, the node reads the table)."""
    import json

    rows = {}
    for line in (ROOT / "docs" / "ros.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 5 and cells[0].startswith("`") and cells[1] in TYPES:
            rows[cells[0].strip("`")] = cells[1:]
    assert list(rows) == [p.name for p in PARAMS]
    for p in PARAMS:
        kind, default, changes, description = rows[p.name]
        assert kind == p.type, p.name
        if p.default == IDENTITY_4X4:
            assert default == "identity"
        else:
            assert json.loads(default.strip("`")) == p.default, p.name
        assert changes == ("configure" if p.read_only else "any time"), p.name
        assert description == p.description.replace("|", "\\|"), p.name


TYPES = {"string", "string_array", "integer", "double", "double_array", "bool"}
