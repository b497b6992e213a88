#!/usr/bin/env python3
"""Load test: many client processes call a running gsbp node at once.

Each client is its own process with its own rclpy context and DDS participant (as planners
on a robot are); every client waits until all are connected, then makes ``--calls`` calls
alternating ``~/segment`` (text) and ``~/transfer_affordance`` (lift-with-poses, one demo
view), each with a deadline of ``--timeout`` seconds. A call that gets no answer within its
deadline is *unanswered*; a client keeps listening for late answers until it is done, so
the report tells a slow answer from a lost one.

    python -m gsbp_ros.nodes.load_test --node /gsbp --scene-dir out/demo/scene \
        --clients 8 --calls 100 --timeout 10 --runs 3 --json out/load.json

It needs a running node on ``--scene-dir`` (a demo scene, see ``gsbp demo-scene``);
scripts/load_test.py starts one, runs the full test and writes docs/reliability.md. Exit
code 0 only when every call of every run was answered in time and succeeded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

#: Kinds of calls, in the order each client alternates them.
KINDS = ("segment", "transfer_affordance")


# -- one client process ------------------------------------------------------------------------


def _requests(target: str, scene_dir: Path, call) -> dict[str, object]:
    """One request of each kind: segment "mug" against "table"; a lift-with-poses transfer
    of the demo view that shows the most of the mug handle, with the node's frame transform."""
    from gsbp_ros.nodes.demo_client import demo_views, get_parameters, transfer_request
    from gsbp_ros.nodes.frame_msgs import SceneToFrame
    from gsbp_ros.srv import Segment

    params = get_parameters(
        call,
        target,
        ["scene_to_frame.translation", "scene_to_frame.rotation", "scene_to_frame.scale"],
        60.0,
    )
    transform = SceneToFrame.from_params(
        params["scene_to_frame.translation"],
        params["scene_to_frame.rotation"],
        params["scene_to_frame.scale"],
    )
    cams, images, masks, labels = demo_views(scene_dir, 1)
    return {
        "segment": Segment.Request(positive=["mug"], negative=["table"]),
        "transfer_affordance": transfer_request(cams, images, masks, labels, transform, 5),
    }


def client_main(args: argparse.Namespace) -> int:
    """A client process: prints 'ready', waits for 'go' on stdin, makes its calls, prints
    one JSON line with every call's record."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from gsbp_ros.nodes.demo_client import Client
    from gsbp_ros.srv import Segment, TransferAffordance

    types = {"segment": Segment, "transfer_affordance": TransferAffordance}
    target = args.node.rstrip("/")
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(f"gsbp_load_client_{os.getpid()}", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    if args.wake_period > 0:
        node.create_timer(args.wake_period, lambda: None)
    threading.Thread(target=executor.spin, daemon=True).start()
    requests = _requests(target, Path(args.scene_dir), Client(node))
    qos = {}
    if args.keep_all:
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

        qos["qos_profile"] = QoSProfile(
            history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE
        )
    clients = {k: node.create_client(types[k], f"{target}/{k}", **qos) for k in KINDS}
    for kind, cli in clients.items():
        if not cli.wait_for_service(timeout_sec=60.0):
            print(json.dumps({"error": f"{target}/{kind} not available"}), flush=True)
            return 1
    print("ready", flush=True)
    if not args.as_ready:
        sys.stdin.readline()  # the parent's "go": every client starts at once

    records: list[dict] = []
    pending: list[tuple[dict, object]] = []
    for i in range(args.calls):
        kind = KINDS[(i + args.offset) % len(KINDS)]
        done = threading.Event()
        answered_at: list[float] = []

        def on_done(_f, d=done, at=answered_at) -> None:
            at.append(time.monotonic())
            d.set()

        t0, sent_ns = time.monotonic(), time.time_ns()
        deadline = t0 + args.timeout
        futures = []
        while True:  # send, and resend every resend_after s without an answer (0: never)
            futures.append(clients[kind].call_async(requests[kind]))
            futures[-1].add_done_callback(on_done)
            left = deadline - time.monotonic()
            step = min(left, args.resend_after) if args.resend_after > 0 else left
            if done.wait(max(0.0, step)) or time.monotonic() >= deadline:
                break
            if not args.resend_same:  # a new client: a new DDS reader for the answers
                stale, clients[kind] = (
                    clients[kind],
                    node.create_client(types[kind], f"{target}/{kind}", **qos),
                )
                for f in futures:
                    stale.remove_pending_request(f)
                node.destroy_client(stale)
                clients[kind].wait_for_service(timeout_sec=max(0.1, deadline - time.monotonic()))
        answered = done.is_set()
        rec = {"kind": kind, "answered": answered, "latency_s": time.monotonic() - t0}
        rec["resends"] = len(futures) - 1
        if answered:
            res = next(f for f in futures if f.done()).result()
            rec["success"] = bool(res.success)
            if not res.success:
                rec["message"] = res.message
        else:
            rec["sent_at"] = t0
            rec["answered_at"] = answered_at
            rec["sent_unix_ns"] = sent_ns
            rec["sequence_number"] = _sequence_number(clients[kind], futures[0])
            pending.append((rec, futures[0]))
        records.append(rec)
    # Late answers: a call that answers after its deadline was slow; one that never does
    # (within the grace period) was lost.
    grace = time.monotonic() + args.grace
    for rec, future in pending:
        while not future.done() and time.monotonic() < grace:
            time.sleep(0.05)  # polling interval of a condition
        at = rec.pop("answered_at")
        rec["late_answer_s"] = (at[0] - rec.pop("sent_at")) if at else None
    print(json.dumps({"pid": os.getpid(), "records": records}), flush=True)
    executor.shutdown(timeout_sec=2)
    node.destroy_node()
    rclpy.try_shutdown(context=context)
    if not args.unclean_exit:
        # Destroys the DDS participant, which tells the others it is gone; without it the
        # process exit leaves a dead participant that they keep for its lease (20 s).
        context.destroy()
    return 0


def _sequence_number(client, future) -> int | None:
    """The request's sequence number (to find it in the node's log), None once answered."""
    pending = getattr(client, "_pending_requests", {})
    return next((seq for seq, f in list(pending.items()) if f is future), None)


# -- the parent: start clients, gather, summarise ---------------------------------------------


@dataclass
class RunResult:
    """One run of ``clients`` processes x ``calls`` calls."""

    clients: int
    calls: int
    timeout_s: float
    wall_s: float
    records: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def unanswered(self) -> int:
        return sum(not r["answered"] for r in self.records) + self.missing

    @property
    def missing(self) -> int:
        """Calls never made (a client process failed)."""
        return self.clients * self.calls - len(self.records)

    @property
    def failed(self) -> int:
        return sum(r["answered"] and not r["success"] for r in self.records)

    def latencies(self, kind: str | None = None) -> list[float]:
        return sorted(
            r["latency_s"] for r in self.records if r["answered"] and kind in (None, r["kind"])
        )

    def summary(self) -> dict:
        out = {
            "clients": self.clients,
            "calls_per_client": self.calls,
            "timeout_s": self.timeout_s,
            "calls": self.clients * self.calls,
            "answered": len(self.records) - sum(not r["answered"] for r in self.records),
            "unanswered": self.unanswered,
            "late_answers": sum(
                (not r["answered"]) and r.get("late_answer_s") is not None for r in self.records
            ),
            "failed": self.failed,
            "resent_calls": sum(r.get("resends", 0) > 0 for r in self.records),
            "wall_s": round(self.wall_s, 2),
            "errors": self.errors,
            # For the node's log: kind, sequence number, send time, resends, late answer.
            "unanswered_calls": [r for r in self.records if not r["answered"]][:20],
            "failure_messages": sorted(
                {r["message"] for r in self.records if r["answered"] and not r["success"]}
            )[:5],
        }
        for kind in (None, *KINDS):
            lat = self.latencies(kind)
            key = kind or "all"
            out[key] = {
                "n": len(lat),
                "p50_s": round(percentile(lat, 50), 4) if lat else None,
                "p99_s": round(percentile(lat, 99), 4) if lat else None,
                "max_s": round(lat[-1], 4) if lat else None,
            }
        return out

    @property
    def ok(self) -> bool:
        return not self.errors and self.unanswered == 0 and self.failed == 0


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of an ascending list."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, int(-(-q * len(sorted_values) // 100)))  # ceil(q/100 * n)
    return sorted_values[min(rank, len(sorted_values)) - 1]


def run_load(
    node: str,
    scene_dir: str | Path,
    *,
    clients: int = 8,
    calls: int = 100,
    timeout: float = 10.0,
    grace: float = 30.0,
    env: dict[str, str] | None = None,
    start_timeout: float = 120.0,
    as_ready: bool = False,
    resend_after: float = 2.0,
    client_args: list[str] = (),
    cwd: str | Path | None = None,
) -> RunResult:
    """Start ``clients`` client processes against the node ``node`` (fully qualified name),
    release them together, wait for their records."""
    cmd = [sys.executable, "-m", "gsbp_ros.nodes.load_test", "--client", "--node", node]
    cmd += ["--scene-dir", str(scene_dir), "--calls", str(calls), "--timeout", str(timeout)]
    cmd += ["--grace", str(grace), "--resend-after", str(resend_after)]
    cmd += (["--as-ready"] if as_ready else []) + list(client_args)
    # stderr (rclpy logs) to files: a full pipe would block a client. Closed in finally.
    logs = [tempfile.TemporaryFile("w+") for _ in range(clients)]  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [*cmd, "--offset", str(i)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=logs[i],
            text=True,
            cwd=cwd,
        )
        for i in range(clients)
    ]
    outputs = [_Lines(p.stdout) for p in procs]
    result = RunResult(clients=clients, calls=calls, timeout_s=timeout, wall_s=0.0)
    try:
        deadline = time.monotonic() + start_timeout
        for p, out in zip(procs, outputs):
            if (
                not out.ready.wait(max(0.0, deadline - time.monotonic()))
                or "ready" not in out.lines
            ):
                result.errors.append(f"client {p.pid} did not start: {out.lines[-3:]}")
        t0 = time.monotonic()
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(OSError):
                    p.stdin.write("go\n")
                    p.stdin.flush()
        # Each client needs at most calls * timeout + grace seconds.
        end = time.monotonic() + calls * timeout + grace + 60.0
        for p, out, log in zip(procs, outputs, logs):
            try:
                p.wait(timeout=max(1.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                result.errors.append(f"client {p.pid} did not finish")
            out.done.wait(10.0)
            docs = [ln for ln in out.lines if ln.startswith("{")]
            if not docs:
                log.seek(0)
                result.errors.append(
                    f"client {p.pid} exited {p.returncode}; stdout: {out.lines[-3:]}; "
                    f"stderr: {log.read()[-1500:]!r}"
                )
                continue
            doc = json.loads(docs[-1])
            if "error" in doc:
                result.errors.append(doc["error"])
            result.records += doc.get("records", [])
        result.wall_s = time.monotonic() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for log in logs:
            log.close()
    return result


class _Lines:
    """Every line a client prints, read as it comes (one reader per stream, so that no
    buffered line is lost); ``ready`` is set at its "ready" line or at the end."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.done = threading.Event()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))
            if line.strip() == "ready":
                self.ready.set()
        self.ready.set()
        self.done.set()


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def format_run(i: int, s: dict, load_before: str, load_after: str) -> str:
    """One Markdown table row of a run's summary."""
    a, seg, tr = s["all"], s["segment"], s["transfer_affordance"]
    return (
        f"| {i} | {s['calls']} | {s['answered']} | {s['unanswered']} | {s['failed']} | "
        f"{s['resent_calls']} | "
        f"{a['p50_s']} | {a['p99_s']} | {a['max_s']} | {seg['p50_s']} / {seg['p99_s']} | "
        f"{tr['p50_s']} / {tr['p99_s']} | {s['wall_s']} | {load_before} -> {load_after} |"
    )


TABLE_HEADER = (
    "| run | calls | answered | unanswered | failed | resent | p50 (s) | p99 (s) | max (s) | "
    "segment p50 / p99 (s) | transfer p50 / p99 (s) | wall (s) | load average (1/5/15 min) |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--node", default="/gsbp", help="fully qualified name of the gsbp node")
    p.add_argument("--scene-dir", required=True, help="the demo scene the node serves")
    p.add_argument("--clients", type=int, default=8, help="client processes")
    p.add_argument("--calls", type=int, default=100, help="calls per client")
    p.add_argument("--timeout", type=float, default=10.0, help="deadline of each call (s)")
    p.add_argument("--grace", type=float, default=30.0, help="wait for late answers (s)")
    p.add_argument(
        "--resend-after",
        type=float,
        default=2.0,
        help="resend a request unanswered after this many seconds, from a new client of the "
        "service (0: never; docs/reliability.md says why)",
    )
    p.add_argument("--runs", type=int, default=1, help="runs, one after the other")
    p.add_argument("--json", help="write the summaries here")
    p.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--offset", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--wake-period", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--keep-all", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--unclean-exit", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--resend-same", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--as-ready",
        action="store_true",
        help="each client starts calling as soon as it sees the services (no common start)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.client:
        return client_main(args)
    summaries = []
    print(TABLE_HEADER)
    ok = True
    for i in range(1, args.runs + 1):
        before = load_average()
        res = run_load(
            args.node,
            args.scene_dir,
            clients=args.clients,
            calls=args.calls,
            timeout=args.timeout,
            grace=args.grace,
            as_ready=args.as_ready,
            resend_after=args.resend_after,
        )
        s = res.summary()
        s["load_average_before"], s["load_average_after"] = before, load_average()
        summaries.append(s)
        print(format_run(i, s, before, s["load_average_after"]), flush=True)
        for e in res.errors:
            print(f"  error: {e}", flush=True)
        ok = ok and res.ok
    if args.json:
        Path(args.json).write_text(json.dumps(summaries, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip the middleware's teardown (see demo_client)
