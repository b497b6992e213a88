"""config/gsbp.yaml == the parameter table == the launch file's arguments."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import yaml

from gsbp_ros.errors import GsbpError
from gsbp_ros.nodes.params import PARAMS, PARAMS_BY_NAME, check_value, engine_config, validate

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


def _launch_arguments() -> dict[str, object]:
    tree = ast.parse((ROOT / "launch" / "gsbp.launch.py").read_text())
    args: dict[str, object] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", "")) == "DeclareLaunchArgument"
        ):
            name = ast.literal_eval(node.args[0])
            kw = {k.arg: k.value for k in node.keywords}
            try:
                default = ast.literal_eval(kw["default_value"])
            except ValueError:
                default = ast.unparse(kw["default_value"])  # a computed path
            args[name] = default
            assert "description" in kw, f"launch argument {name} has no description"
    return args


def _param_arguments_table() -> dict:
    tree = ast.parse((ROOT / "launch" / "gsbp.launch.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "PARAM_ARGUMENTS":
            return ast.literal_eval(node.value)
    raise AssertionError("launch file has no PARAM_ARGUMENTS")


def test_launch_arguments_match_table_and_yaml():
    args = _launch_arguments()
    yaml_values = _yaml_params()
    assert {"scene_path", "cameras_path", "params_file", "device", "rviz"} <= set(args)
    param_args = {k: v for k, v in args.items() if k in PARAMS_BY_NAME}
    assert set(param_args) == {"scene_path", "cameras_path", "device"}
    for name, default in param_args.items():
        assert default == PARAMS_BY_NAME[name].default == yaml_values[name], name
    assert _param_arguments_table() == param_args
    assert "gsbp.yaml" in str(args["params_file"])
    assert args["rviz"] in ("false", "true")


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
    cfg = engine_config({p.name: p.default for p in PARAMS})
    from gsbp_ros.engine import EngineConfig

    defaults = EngineConfig(scene_path="")
    # Every engine setting that has a parameter gets the engine's own default.
    for f in dataclasses.fields(EngineConfig):
        assert getattr(cfg, f.name) == getattr(defaults, f.name), f.name


def test_checks_reject_bad_values_with_a_reason():
    defaults = {p.name: p.default for p in PARAMS}
    validate(defaults)  # the defaults are valid
    assert all(check_value(p.name, p.default) == "" for p in PARAMS)
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
    import re

    import yaml

    root = Path(__file__).resolve().parents[2]
    node_src = (root / "gsbp_ros" / "nodes" / "gsbp_node.py").read_text()
    latched = set(re.findall(r'pub\(\w+, "~/(\w+)", LATCHED_QOS\)', node_src))
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
