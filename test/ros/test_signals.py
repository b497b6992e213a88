"""SIGINT / SIGTERM at any moment of the node's start-up end it with exit code 0 and no
traceback (as they do once it serves: test_node_integration, test_lifecycle).

Four node processes, started together, each signalled at one moment: as soon as the
package's code runs (its handlers are installed; the interpreter is still importing rclpy
and numpy), inside the configure transition, and while back-projecting. Before the first line
of the package runs (the interpreter's own start, a few tens of milliseconds) a signal ends
the process the default way; that moment is not tested here.
"""

from __future__ import annotations

import signal

import pytest
from ros_support import NodeProcess, catches, wait_for

pytestmark = pytest.mark.ros


def _slow_params(demo, folder) -> dict:
    """A start-up that takes minutes (5000 generated views), so every moment can be hit."""
    folder.mkdir(exist_ok=True)
    return {
        "scene_path": str(demo["dir"] / "scene.ply"),
        "cameras_path": "orbit",  # the demo folder's own cameras would be found otherwise
        "device": "cpu",
        "feature_sources": ["labels"],
        "label_maps_dir": str(folder),
        "label_names": demo["names"]["objects"],
        "num_generated_views": 5000,
        "generated_view_size": 128,
    }


def test_signals_at_every_moment_of_start_up(ros_env, demo, tmp_path):
    params = _slow_params(demo, tmp_path / "no_label_maps")
    # name -> (signal, log line to wait for; None = as soon as the handlers are installed)
    moments = {
        "gsbp_sig_import_int": (signal.SIGINT, None),
        "gsbp_sig_import_term": (signal.SIGTERM, None),
        "gsbp_sig_configure_int": (signal.SIGINT, "configuring: scene"),
        "gsbp_sig_projecting_term": (signal.SIGTERM, "back-projecting: "),
    }
    procs = {name: NodeProcess(name, ros_env, params, tmp_path) for name in moments}
    codes = {}
    try:
        for name, (sig, line) in moments.items():
            node = procs[name]
            if line is None:
                wait_for(lambda n=node: catches(n.proc.pid, signal.SIGTERM), 60, "handlers")
            else:
                node.wait_for_log(line, timeout=180)
            codes[name] = node.stop(sig)
    finally:
        for node in procs.values():
            node.stop(signal.SIGKILL)
    for name, node in procs.items():
        log = node.log()
        assert codes[name] == 0, f"{name}: exit code {codes[name]}\n{log[-3000:]}"
        assert "Traceback" not in log, f"{name}:\n{log[-3000:]}"
