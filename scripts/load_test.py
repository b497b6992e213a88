#!/usr/bin/env python3
"""The full load test of issue 11: a gsbp node on the demo scene, 8 client processes x 100
mixed calls (segment and transfer_affordance), every call answered within 10 s, 3 runs in a
row; the results (p50/p99, unanswered, machine, load average) go to docs/reliability.md.

    bash -c 'source install/setup.bash && .venv/bin/python scripts/load_test.py'
    ... scripts/load_test.py --runs 3 --clients 8 --calls 100 --timeout 10 [--no-doc]

The node runs as its own process (python -m gsbp_ros.nodes.gsbp_node) from the install
space, on a ROS_DOMAIN_ID of its own, discovery limited to this host. The load itself is
gsbp_ros/nodes/load_test.py (test/ros/test_load.py runs a short version in the suite).
Exit code 0 only when every run passed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- load-test results: begin -->", "<!-- load-test results: end -->"


def machine() -> str:
    from gsbp_ros.hostinfo import cpu_model, memory_gib

    gib = memory_gib()
    cpu, mem = cpu_model(), "?" if gib is None else f"{gib:.0f} GiB"
    from importlib.metadata import version

    import rclpy  # noqa: F401 - the version is the point

    return (
        f"{os.cpu_count()} CPUs ({cpu}), {mem} RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, rclpy {version('rclpy')}, "
        f"rmw {os.environ.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp (default)')}, "
        f"ros-fastdds {version('ros-fastdds')}"
    )


def start_node(scene: Path, work: Path, env: dict[str, str]) -> subprocess.Popen:
    names = json.loads((scene / "names.json").read_text())["objects"]
    args = [
        sys.executable,
        "-m",
        "gsbp_ros.nodes.gsbp_node",
        "--ros-args",
        "-r",
        "__node:=gsbp_load",
        "--params-file",
        str(ROOT / "config" / "gsbp.yaml"),
    ]
    params = {
        "scene_path": scene / "scene.ply",
        "cameras_path": scene / "sparse" / "0",
        "device": "cpu",
        "feature_sources": "[labels]",
        "label_maps_dir": scene / "labels" / "objects",
        "label_names": "[" + ",".join(names) + "]",
        "output_dir": work / "output",
        "cache_dir": work / "cache",
    }
    for k, v in params.items():
        args += ["-p", f"{k}:={v}"]
    log = open(work / "node.log", "w")  # noqa: SIM115 - lives as long as the node
    return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)


def wait_ready(node: str, env: dict[str, str], timeout: float) -> None:
    code = (
        "import sys, threading, rclpy\n"
        "from rclpy.executors import SingleThreadedExecutor\n"
        "from gsbp_ros.nodes.demo_client import Client, wait_until_ready\n"
        "rclpy.init(); n = rclpy.create_node('gsbp_load_wait'); e = SingleThreadedExecutor()\n"
        "e.add_node(n); threading.Thread(target=e.spin, daemon=True).start()\n"
        f"print(wait_until_ready(Client(n), {node!r}, {timeout}).message, flush=True)\n"
        "import os; os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=timeout + 30)


def write_doc(rows: list[str], summaries: list[dict], args, started: str, host: str) -> None:
    from gsbp_ros.nodes.load_test import TABLE_HEADER

    passed = all(s["unanswered"] == 0 and s["failed"] == 0 and not s["errors"] for s in summaries)
    block = "\n".join(
        [
            BEGIN,
            f"Measured {started} with `scripts/load_test.py --runs {args.runs} --clients "
            f"{args.clients} --calls {args.calls} --timeout {args.timeout:g} --resend-after "
            f"{args.resend_after:g}{' --as-ready' if args.as_ready else ''}`: "
            f"**{'passed' if passed else 'FAILED'}**.",
            "",
            f"Machine: {host}. Shared with other jobs while measured: the load average "
            "(1/5/15 min, before -> after each run) is in the table.",
            "",
            TABLE_HEADER,
            *rows,
            "",
            "Latency = a client's round trip (send to answer), over all answered calls of a "
            "run; p50/p99 by nearest rank.",
            END,
        ]
    )
    text = DOC.read_text() if DOC.exists() else f"# Reliability\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text = text.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    DOC.write_text(head + block + tail)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--calls", type=int, default=100)
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--no-doc", action="store_true", help="do not update docs/reliability.md")
    p.add_argument("--as-ready", action="store_true", help="clients start as they connect")
    p.add_argument(
        "--resend-after", type=float, default=2.0, help="client resend period (s); 0 = never"
    )
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    args = p.parse_args()

    from gsbp_ros.demo_scene import write_demo_scene
    from gsbp_ros.nodes.load_test import TABLE_HEADER, format_run, load_average, run_load

    env = dict(os.environ)
    env.setdefault("ROS_DOMAIN_ID", str(random.randint(150, 200)))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    os.environ.update(env)
    work = Path(tempfile.mkdtemp(prefix="gsbp_load_"))
    print(f"work folder {work}, ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}", flush=True)
    scene = work / "scene"
    write_demo_scene(scene, num_views=8, density=0.5)
    node = start_node(scene, work, env)
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    host = machine()
    rows, summaries = [], []
    try:
        t = time.monotonic()
        wait_ready("/gsbp_load", env, 300.0)
        print(f"node ready after {time.monotonic() - t:.1f} s", flush=True)
        print(TABLE_HEADER, flush=True)
        for i in range(1, args.runs + 1):
            before = load_average()
            res = run_load(
                "/gsbp_load",
                scene,
                clients=args.clients,
                calls=args.calls,
                timeout=args.timeout,
                env=env,
                as_ready=args.as_ready,
                resend_after=args.resend_after,
            )
            s = res.summary()
            s["load_average_before"], s["load_average_after"] = before, load_average()
            summaries.append(s)
            rows.append(format_run(i, s, before, s["load_average_after"]))
            print(rows[-1], flush=True)
            for e in res.errors + s["failure_messages"]:
                print(f"  {e}", flush=True)
            if node.poll() is not None:
                print(f"node exited with {node.returncode}", flush=True)
                break
    finally:
        node.send_signal(2)
        try:
            node.wait(timeout=20)
        except subprocess.TimeoutExpired:
            node.kill()
        (work / "summaries.json").write_text(json.dumps(summaries, indent=2) + "\n")
        print(f"summaries: {work / 'summaries.json'}; node log: {work / 'node.log'}")
    if not args.no_doc and len(summaries) == args.runs:
        write_doc(rows, summaries, args, started, host)
        print(f"wrote {DOC.relative_to(ROOT)}")
    ok = len(summaries) == args.runs and all(
        s["unanswered"] == 0 and s["failed"] == 0 and not s["errors"] for s in summaries
    )
    return 0 if ok else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
