"""What the node says about itself: the "not ready" answer of its services and its
/diagnostics status, both from one :class:`Health` snapshot (lifecycle state + engine status).

Pure functions of the snapshot (no node, no executor), unit-tested alone. Levels:

- ERROR: the last configure failed (the message names the parameter to fix where it can).
- WARN: not serving (configuring, inactive, unconfigured, finalized), or serving with a
  problem: a requested feature source is inactive, no source is active, or the views saw
  under half of the Gaussians (cameras in another frame than the scene?).
- OK: active and none of the above.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

#: The parameters that decide whether a feature source can load.
SOURCE_PARAMETERS = {
    "dinov2": "dinov2_model",
    "clip": "clip_model",
    "labels": "label_maps_dir and label_names",
}
#: Parameters that name a file or folder: a failure message that quotes one's value names it.
PATH_PARAMETERS = (
    "scene_path",
    "cameras_path",
    "label_maps_dir",
    "cache_dir",
    "output_dir",
    "dinov2_model",
    "clip_model",
)
#: Under this fraction of Gaussians seen by the views, the field is mostly empty.
MIN_SEEN_FRACTION = 0.5


@dataclass
class Health:
    """One consistent look at the node.

    Attributes:
        lifecycle: lifecycle state label (unconfigured, configuring, inactive, activating,
            active, deactivating, cleaningup, shuttingdown, finalized, errorprocessing).
        failure: why the last configure failed ('' if it did not).
        engine: the engine's status (:class:`gsbp_ros.engine.EngineStatus`) while it exists.
        params: the parameter values the node was configured with (names -> values).
    """

    lifecycle: str
    failure: str = ""
    engine: object | None = None
    params: dict = field(default_factory=dict)


def engine_phase(status) -> str:
    """Where start-up is: "loading scene ...", "back-projecting 12/40 views, ETA 8 s", ..."""
    if status is None or status.state == "idle":
        return "starting"
    if status.state == "backprojecting":
        eta = f", ETA {status.eta_s:.0f} s" if status.eta_s is not None else ""
        return f"back-projecting {status.views_done}/{status.views_total} views{eta}"
    if status.state == "ready":
        return "finishing"
    return status.message or status.state


def not_ready(h: Health) -> str:
    """'' when the node serves requests (active), else the answer: "not ready: <why>"."""
    state = h.lifecycle
    if state == "active":
        return ""
    if state == "configuring":
        return f"not ready: configuring: {engine_phase(h.engine)}"
    if state == "unconfigured":
        if h.failure:
            return f"not ready: unconfigured: start-up failed: {h.failure}"
        return "not ready: unconfigured (waiting for the configure transition)"
    if state == "inactive":
        return "not ready: inactive (waiting for the activate transition)"
    if state == "finalized":
        return "not ready: finalized (the node was shut down)"
    return f"not ready: {state}"


def parameter_hint(message: str, params: dict) -> str:
    """' (parameter X)' when ``message`` quotes the value of path parameter X and does not
    already name X; else ''."""
    for name in PATH_PARAMETERS:
        value = str(params.get(name, "") or "")
        if value and value in message and name not in message:
            return f" (parameter {name})"
    return ""


def assess(h: Health) -> tuple[int, str, str]:
    """``(level, message, state)`` of the node: a DiagnosticStatus level (OK/WARN/ERROR), one
    line that says what to fix, and a one-word state (the lifecycle state, or 'failed')."""
    st = h.engine
    if h.failure:
        return (
            DiagnosticStatus.ERROR,
            f"start-up failed: {h.failure}{parameter_hint(h.failure, h.params)}",
            "failed",
        )
    if st is not None and st.state == "failed":  # the moment before configure returns
        return (
            DiagnosticStatus.ERROR,
            f"start-up failed: {st.message}{parameter_hint(st.message, h.params)}",
            "failed",
        )
    reason = not_ready(h)
    if reason:
        return DiagnosticStatus.WARN, reason, h.lifecycle
    problems = serving_problems(st, h.params)
    if problems:
        return DiagnosticStatus.WARN, "; ".join(problems), "active"
    sources = ", ".join(st.active_sources) if st is not None else ""
    n = st.num_gaussians if st is not None else 0
    return DiagnosticStatus.OK, f"active: {n} Gaussians, feature sources: {sources}", "active"


def serving_problems(st, params: dict) -> list[str]:
    """What is wrong with an active node's field, one line each, naming the parameter."""
    if st is None:
        return []
    problems = []
    inactive = dict(st.inactive_sources)
    if inactive:
        fixes = ", ".join(
            f"{name} (check {SOURCE_PARAMETERS.get(name, 'feature_sources')})" for name in inactive
        )
        problems.append(
            f"requested feature source(s) inactive: {fixes}; the reasons are in "
            "inactive_sources, or drop them from feature_sources"
        )
    if not st.active_sources:
        problems.append(
            "no feature source is active (feature_sources): only save_region can be served"
        )
    seen = getattr(st, "seen_fraction", None)
    if seen is not None and seen < MIN_SEEN_FRACTION:
        problems.append(
            f"the views saw only {100 * seen:.0f}% of the Gaussians: check cameras_path and "
            "cameras_transform (cameras in another frame than the scene?)"
        )
    return problems


def key_values(h: Health, state: str, last_query: dict) -> list[KeyValue]:
    """The DiagnosticStatus values: state, progress, sources, last query."""
    st = h.engine
    kv = {
        "state": state,
        "lifecycle_state": h.lifecycle,
        "frame_id": str(h.params.get("frame_id", "")),
        "scene_path": str(h.params.get("scene_path", "")),
    }
    if st is not None:
        kv.update(
            {
                "engine_state": st.state,
                "num_gaussians": str(st.num_gaussians),
                "views_done": str(st.views_done),
                "views_total": str(st.views_total),
                "eta_s": "" if st.eta_s is None else f"{st.eta_s:.1f}",
                "active_sources": ",".join(st.active_sources),
                "inactive_sources": "; ".join(
                    f"{k}: {v}" for k, v in dict(st.inactive_sources).items()
                ),
                "seen_fraction": ""
                if getattr(st, "seen_fraction", None) is None
                else f"{st.seen_fraction:.3f}",
                "startup_s": "" if st.startup_s is None else f"{st.startup_s:.2f}",
                "cache_hit": str(bool(st.cache_hit)).lower(),
            }
        )
    kv.update(
        {
            "last_query": str(last_query.get("name", "")),
            "last_query_latency_s": f"{last_query['latency_s']:.3f}" if last_query else "",
            "last_query_success": str(last_query.get("success", "")).lower(),
        }
    )
    return [KeyValue(key=k, value=v) for k, v in kv.items()]


def diagnostic_status(h: Health, *, name: str, last_query: dict) -> DiagnosticStatus:
    """The node's DiagnosticStatus (see :func:`assess` for the level)."""
    level, message, state = assess(h)
    return DiagnosticStatus(
        level=level,
        name=name,
        message=message,
        hardware_id=str(h.params.get("scene_path", "")),
        values=key_values(h, state, last_query),
    )
