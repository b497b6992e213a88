"""A short load test in the suite (the full one: scripts/load_test.py, docs/reliability.md):
client processes, each with its own DDS participant, call the demo node's segment and
transfer_affordance services at once; every call must be answered, successfully, within its
deadline. Bounded: at most clients x calls x deadline seconds, about 20 s on 2 cores."""

from __future__ import annotations

from gsbp_ros.nodes.load_test import run_load

CLIENTS, CALLS, DEADLINE_S = 4, 16, 10.0


def test_concurrent_clients_get_every_answer(good, demo, ros_env, tmp_path):
    result = run_load(
        good.fqn,
        demo["dir"],
        clients=CLIENTS,
        calls=CALLS,
        timeout=DEADLINE_S,
        grace=5.0,
        env=ros_env,
        cwd=tmp_path,  # run the clients from the install space, as the node
        as_ready=True,  # each client starts as soon as it sees the services
    )
    summary = result.summary()
    assert not result.errors, result.errors
    assert len(result.records) == CLIENTS * CALLS
    assert summary["unanswered"] == 0, {
        k: summary[k] for k in ("unanswered", "late_answers", "resent_calls", "unanswered_calls")
    }
    assert summary["failed"] == 0, summary["failure_messages"]
    assert {r["kind"] for r in result.records} == {"segment", "transfer_affordance"}
    assert good.alive()
