"""Helpers of the ROS 2 tests (imported by conftest.py and the tests): the install's
interfaces, node processes, the in-process client, waiting on conditions.

The generated interfaces (``gsbp_ros.msg`` / ``gsbp_ros.srv``) exist only in the install
space; when this process imported ``gsbp_ros`` from the source tree, the install's package
folder is appended to ``gsbp_ros.__path__`` (and its libraries preloaded) so that both work.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "install"
PYTHON = sys.executable
DOMAIN_ID = int(os.environ.get("GSBP_TEST_DOMAIN_ID", 100 + os.getpid() % 100))
NAMESPACE = f"/gsbp_test_{os.getpid()}"
# The demo scene used here: small enough for 2 shared cores, IoU of "mug" stays > 0.9.
DEMO_VIEWS, DEMO_DENSITY = 8, 0.5
# scene -> frame transform the test node runs with: 90 deg about z, scale 2, a translation.
SCENE_TO_FRAME = {
    "translation": [1.0, -2.0, 0.5],
    "rotation": [0.0, 0.0, float(np.sin(np.pi / 4)), float(np.cos(np.pi / 4))],
    "scale": 2.0,
}


def _install_package_dir() -> Path | None:
    hits = sorted(INSTALL.glob("gsbp_ros/lib/python3*/site-packages/gsbp_ros"))
    return hits[0] if hits else None


def _use_install_interfaces() -> str:
    """Make ``gsbp_ros.msg`` / ``gsbp_ros.srv`` importable; '' on success, else why not."""
    pkg = _install_package_dir()
    if pkg is None or not (pkg / "srv").is_dir():
        return f"{INSTALL} has no built gsbp_ros: run scripts/build_ros.sh first"
    import gsbp_ros

    if str(pkg) not in list(gsbp_ros.__path__):
        gsbp_ros.__path__.append(str(pkg))
    # Without `source install/setup.bash`, the loader does not know install/gsbp_ros/lib.
    pending = sorted((INSTALL / "gsbp_ros" / "lib").glob("libgsbp_ros__*.so"))
    for _ in range(len(pending) + 1):
        failed = []
        for lib in pending:
            try:
                ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
            except OSError:
                failed.append(lib)
        if not failed or len(failed) == len(pending):
            break
        pending = failed
    try:
        import gsbp_ros.msg
        import gsbp_ros.srv
    except ImportError as exc:
        return f"cannot import the built interfaces ({exc}): source install/setup.bash"
    return ""


INTERFACES_MISSING = _use_install_interfaces()


# -- node processes --------------------------------------------------------------------------


class LoggedProcess:
    """A child process whose stdout and stderr go to ``log_path`` (read while it runs)."""

    name: str
    log_path: Path
    proc: subprocess.Popen

    def _start(self, args: list[str], env: dict[str, str], cwd: Path, **popen) -> None:
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed when the process ends
        self.proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT, **popen
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 120.0) -> None:
        """Until ``text`` appears in the output (fails if the process exits first)."""
        wait_for(
            lambda: text in self.log() or not self.alive(),
            timeout,
            f"{text!r} in the log of {self.name}",
        )
        assert text in self.log(), f"{self.name} exited before {text!r}:\n{self.log()[-3000:]}"


class NodeProcess(LoggedProcess):
    """A gsbp node started as ``python -m gsbp_ros.nodes.gsbp_node --ros-args ...``."""

    def __init__(self, name: str, env: dict[str, str], params: dict[str, object], workdir: Path):
        self.name = name
        self.fqn = f"{NAMESPACE}/{name}"
        self.log_path = workdir / f"{name}.log"
        args = [
            PYTHON,
            "-m",
            "gsbp_ros.nodes.gsbp_node",
            "--ros-args",
            "-r",
            f"__ns:={NAMESPACE}",
            "-r",
            f"__node:={name}",
            "--params-file",
            str(ROOT / "config" / "gsbp.yaml"),
        ]
        for key, value in params.items():
            args += ["-p", f"{key}:={_param_text(value)}"]
        self._start(args, env, workdir)

    def service(self, name: str) -> str:
        return f"{self.fqn}/{name}"

    def stop(self, sig: int = signal.SIGINT) -> int | None:
        """Send ``sig`` (if still running) and wait; the exit code (-N: killed by signal N,
        after 15 s without exiting it is SIGKILLed)."""
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval=0.1):
    """Poll ``condition`` until it is true (returns its value) or ``timeout`` s passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout:.0f} s: {what}")
        time.sleep(interval)  # polling interval of a condition


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of a process, None when it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def descendants(pid: int) -> list[int]:
    """Every living descendant of process ``pid`` (children, grandchildren, ...)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None and st[0] != "Z":
                parents[int(entry.name)] = st[1]
    found, frontier = [], [pid]
    while frontier:
        children = [c for c, p in parents.items() if p in frontier]
        found += children
        frontier = children
    return found


def running(pids: list[int]) -> list[int]:
    """The processes of ``pids`` that still run (neither gone nor zombies)."""
    return [p for p in pids if (st := _stat(p)) is not None and st[0] != "Z"]


def catches(pid: int, sig: int) -> bool:
    """True when process ``pid`` has a handler installed for signal ``sig``."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    except FileNotFoundError:
        pass
    return False


def _param_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_param_text(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(float(value))
    return str(value)


def demo_node_params(demo: dict, output_dir: Path, cache_dir: Path) -> dict[str, object]:
    """The demo node's parameters; nodes with the same ``cache_dir`` share the built field."""
    d = demo["dir"]
    return {
        "scene_path": str(d / "scene.ply"),
        "cameras_path": str(d / "sparse" / "0"),
        "device": "cpu",
        "feature_sources": ["dinov2", "clip", "labels"],  # only 'labels' can load here
        "dinov2_model": str(output_dir / "no-dinov2-weights-here"),
        "clip_model": str(output_dir / "no-clip-weights-here"),
        "label_maps_dir": str(d / "labels" / "objects"),
        "label_names": demo["names"]["objects"],
        "output_dir": str(output_dir),
        "frame_id": "map",
        "scene_to_frame.translation": SCENE_TO_FRAME["translation"],
        "scene_to_frame.rotation": SCENE_TO_FRAME["rotation"],
        "scene_to_frame.scale": SCENE_TO_FRAME["scale"],
        "diagnostics_period": 0.5,
        "cache_dir": str(cache_dir),
    }


# -- the client in this process --------------------------------------------------------------


class Recorder:
    """Messages received on one topic, with a condition to wait on. ``on_silent`` (latched
    topics) is called each time nothing at all has arrived for ``silent_after`` more
    seconds; such a wait lasts at least :data:`SILENT_TRIES` of those periods, since a
    latched message arrives at once unless the DDS stall of :class:`RosClient` holds it."""

    SILENT_TRIES = 4

    def __init__(
        self, on_silent: Callable[[str], None] | None = None, silent_after: float = 20.0
    ) -> None:
        self.messages: list = []
        self._cond = threading.Condition()
        self._on_silent, self._silent_after = on_silent, silent_after

    def __call__(self, msg) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list], bool], timeout: float = 30.0):
        if self._on_silent is not None:
            timeout = max(timeout, self.SILENT_TRIES * self._silent_after)
        deadline = time.monotonic() + timeout
        next_try = time.monotonic() + self._silent_after
        while True:
            with self._cond:
                while not predicate(self.messages):
                    now = time.monotonic()
                    if now >= deadline:
                        raise TimeoutError(f"condition not met; {len(self.messages)} messages")
                    silent = self._on_silent is not None and not self.messages
                    if silent and now >= next_try:
                        break
                    self._cond.wait(min(deadline, next_try if silent else deadline) - now)
                else:
                    return self.messages[-1] if self.messages else None
            # outside the lock: the reconnect stops the executor that calls this recorder
            self._on_silent(f"no message in {self._silent_after:.0f} s")
            next_try = time.monotonic() + self._silent_after


class RosClient:
    """An rclpy node spinning in a background thread, with blocking helpers (the service
    calls are the demo client's).

    Fast DDS 3.2.2 (the PyPI wheels) sometimes leaves this long-lived participant unmatched
    by a node started after it: requests go unanswered and latched topics stay silent for
    minutes, and fresh clients of the same participant do not help (docs/reliability.md).
    A query unanswered for :data:`STUCK_AFTER_S` therefore reconnects: a new participant
    with the same subscriptions, then the query again, and so on until its deadline. Each
    reconnect is logged to stderr (pytest shows it with a failure)."""

    #: A query (not a NOT_RESENT service) without an answer for this long reconnects.
    STUCK_AFTER_S = 20.0

    def __init__(self) -> None:
        self.reconnects = 0
        self._subscriptions: list[tuple[object, str, object, Recorder]] = []
        self._connect()

    def _connect(self) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        from gsbp_ros.nodes.demo_client import Client

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"gsbp_test_client_{os.getpid()}", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        self.services = Client(self.node)  # the demo client's blocking calls
        for msg_type, topic, qos, rec in self._subscriptions:
            self.node.create_subscription(msg_type, topic, rec, qos)

    def reconnect(self, why: str) -> None:
        self.reconnects += 1
        print(f"RosClient: new participant ({why})", file=sys.stderr, flush=True)
        self.close()
        self._connect()

    def _spin(self) -> None:
        with contextlib.suppress(Exception):  # ExternalShutdownException at the end
            self.executor.spin()

    def call(self, srv_type, name: str, request, timeout: float = 60.0):
        """Blocking call; raises DemoError when the service is missing or does not answer."""
        from gsbp_ros.nodes.demo_client import NOT_RESENT, DemoError

        if srv_type.__name__ in NOT_RESENT or timeout <= self.STUCK_AFTER_S:
            return self.services.call(srv_type, name, request, timeout)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                return self.services.call(srv_type, name, request, min(left, self.STUCK_AFTER_S))
            except DemoError as exc:
                if "did not answer" not in str(exc) or left <= self.STUCK_AFTER_S:
                    raise
                self.reconnect(f"{name}: {exc}")

    def subscribe(self, msg_type, topic: str, *, latched: bool = True) -> Recorder:
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        qos = QoSProfile(
            depth=10,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
        )
        on_silent = (lambda why: self.reconnect(f"{topic}: {why}")) if latched else None
        rec = Recorder(on_silent, self.STUCK_AFTER_S)
        self._subscriptions.append((msg_type, topic, qos, rec))
        self.node.create_subscription(msg_type, topic, rec, qos)
        return rec

    def close(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=2)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def get_state(client: RosClient, fqn: str, timeout: float = 60.0) -> str:
    """The node's lifecycle state label (lifecycle_msgs/GetState over DDS)."""
    from lifecycle_msgs.srv import GetState

    return client.call(
        GetState, f"{fqn}/get_state", GetState.Request(), timeout
    ).current_state.label


def change_state(client: RosClient, fqn: str, transition: str, timeout: float = 240.0) -> bool:
    """Request a lifecycle transition by label over DDS; its ``success``."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    req = ChangeState.Request(transition=Transition(label=transition))
    return bool(client.call(ChangeState, f"{fqn}/change_state", req, timeout).success)


def all_parameters(client: RosClient, fqn: str) -> dict[str, object]:
    """Every declared parameter of the node and its value: ListParameters, then ONE
    GetParameters request for all the names (rclpy answers a request with an empty list when
    any requested parameter is unset). Asserts that every name got a value."""
    from rcl_interfaces.srv import GetParameters, ListParameters
    from rclpy.parameter import parameter_value_to_python

    names = list(
        client.call(ListParameters, f"{fqn}/list_parameters", ListParameters.Request()).result.names
    )
    res = client.call(GetParameters, f"{fqn}/get_parameters", GetParameters.Request(names=names))
    assert len(res.values) == len(names), (len(res.values), len(names))
    return {n: parameter_value_to_python(v) for n, v in zip(names, res.values)}


def wait_until_ready(client: RosClient, node: NodeProcess, timeout: float = 150.0):
    """The demo client's wait: poll ~/segment until the node answers anything but not-ready
    (and fail at once if the node process died)."""
    from gsbp_ros.nodes.demo_client import wait_until_ready as wait

    def alive(_res) -> None:
        if not node.alive():
            raise RuntimeError(f"node {node.name} died:\n{node.log()[-4000:]}")

    return wait(client.services, node.fqn, timeout, alive)
