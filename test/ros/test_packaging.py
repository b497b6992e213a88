"""Packaging: package.xml and setup.py agree, every runtime dependency is declared (rosdep key
or the documented pip route), and the install comes from a plain `colcon build` of a clean
copy of the repository (scripts/build_ros.sh builds exactly that; the other ROS tests run
the install)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from ros_support import ROOT

#: Every library of setup.py's install_requires -> its rosdep key in package.xml, or None
#: where it has none on purpose and docs/ros.md gives the pip command instead.
PIP_TO_ROSDEP = {
    "numpy": "python3-numpy",
    "pillow": "python3-pil",
    "packaging": "python3-packaging",
    "transformers": "python3-transformers-pip",
    "torch": None,  # python3-torch: the distribution's CPU-only, older build
    "safetensors": None,  # no rosdep key; transformers brings it
    "numba": None,  # python3-numba of Humble is older than the wheels' >= 0.59: pip
}


def _package_xml() -> ET.Element:
    return ET.parse(ROOT / "package.xml").getroot()


def _depends(root: ET.Element, *tags: str) -> set[str]:
    return {e.text.strip() for tag in tags for e in root.findall(tag)}


def _setup_kwargs() -> dict:
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup"
    )
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg != "packages"}


def _requirement_name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ;]", spec, maxsplit=1)[0].lower()


def test_package_xml_and_setup_py_agree():
    root = _package_xml()
    setup = _setup_kwargs()
    assert root.findtext("version") == setup["version"]
    assert root.findtext("name") == setup["name"]
    runtime = _depends(root, "depend", "exec_depend")
    names = {_requirement_name(r) for r in setup["install_requires"]}
    assert names == set(PIP_TO_ROSDEP), "a new runtime library needs its rosdep key or pip route"
    docs = (ROOT / "docs" / "ros.md").read_text()
    for name, key in PIP_TO_ROSDEP.items():
        if key is None:
            assert re.search(rf"pip install [^\n`]*\b{name}\b", docs), f"no pip route for {name}"
        else:
            assert key in runtime, f"{name}: package.xml lacks <exec_depend>{key}</exec_depend>"
    python_keys = {d for d in runtime if d.startswith("python3-")}
    assert python_keys == {k for k in PIP_TO_ROSDEP.values() if k}, "undocumented python3- keys"
    assert "python3-torch" not in runtime  # would install a CPU-only torch below the minimum
    for extra in ("gsplat", "open3d"):  # optional libraries: pip, documented
        assert re.search(rf"pip install [^\n`]*\b{extra}\b", docs), extra


def _ros_packages() -> set[str]:
    """Names of the ROS packages in the ament index (AMENT_PREFIX_PATH and, with the PyPI
    wheels, this interpreter's prefix)."""
    found = set()
    prefixes = [*os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep), sys.prefix]
    for prefix in filter(None, prefixes):
        index = Path(prefix) / "share" / "ament_index" / "resource_index" / "packages"
        if index.is_dir():
            found |= {p.name for p in index.iterdir()}
    return found


def test_every_imported_ros_package_is_declared():
    """The ROS packages that the node, the demo client and the launch file import are
    package.xml dependencies (rosdep installs what package.xml names, nothing else)."""
    ros = _ros_packages()
    if not ros:
        pytest.skip("no ament index found: source install/setup.bash (or ROS 2's setup)")
    files = [*(ROOT / "gsbp_ros" / "nodes").glob("*.py"), ROOT / "launch" / "gsbp.launch.py"]
    imported = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    # The launch system is a ROS package even where it is not installed (no
    # ../shared/ros2_launch on this machine): the launch file's imports still count.
    ros |= {"launch", "launch_ros"}
    imported = {m for m in imported if m in ros and m != "gsbp_ros"}
    assert {"rclpy", "launch", "launch_ros", "diagnostic_msgs"} <= imported
    declared = _depends(_package_xml(), "depend", "exec_depend")
    assert imported <= declared, f"imported but not declared: {sorted(imported - declared)}"
    # rclpy.lifecycle needs the lifecycle_msgs interfaces at run time.
    assert "lifecycle_msgs" in declared


@pytest.mark.ros
def test_built_from_a_clean_copy_with_plain_colcon(ros_env):
    """scripts/build_ros.sh runs a plain `colcon build` on a clean copy of the repository
    (what git checks out: build/ros_src/gsbp_ros); its install has the executables with the
    build's Python, the launch file, the config, and the interfaces beside the library."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    wanted = {f for f in files.split("\0") if f and (ROOT / f).is_file()}
    staged = ROOT / "build" / "ros_src" / "gsbp_ros"
    copied = {str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file()}
    assert copied == wanted, (sorted(copied - wanted)[:5], sorted(wanted - copied)[:5])
    install = ROOT / "install" / "gsbp_ros"
    python = Path(os.environ.get("GSBP_VENV", ROOT / ".venv")) / "bin" / "python"
    for exe in ("gsbp_node", "gsbp_demo_client"):
        path = install / "lib" / "gsbp_ros" / exe
        assert os.access(path, os.X_OK), exe
        assert path.read_text().splitlines()[0] == f"#!{python}", exe
    share = install / "share" / "gsbp_ros"
    for name in ("launch/gsbp.launch.py", "config/gsbp.yaml", "config/gsbp.rviz", "package.xml"):
        assert (share / name).is_file(), name
    site = next(install.glob("lib/python3*/site-packages/gsbp_ros"))
    for name in ("srv/_segment.py", "msg/_region.py", "nodes/node.py", "engine.py"):
        assert (site / name).is_file(), name
