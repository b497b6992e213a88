"""PNG plots of the robustness sweep and the baseline comparison (matplotlib, imported only
here and only when a plot is drawn: the rest of the package does not need it)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gsbp_ros.errors import GsbpError
from gsbp_ros.fileio import atomic_write

AXIS_TITLES = {
    "drop": ("views dropped (fraction)", "Views without a label map"),
    "flip": ("segments flipped (fraction)", "Whole segments given a wrong label"),
    "noise": ("pixels replaced (fraction)", "Salt-and-pepper label noise"),
    "boundary": ("boundary shift (px; < 0 eroded, > 0 dilated)", "Masks eroded or dilated"),
    "scale": ("render scale", "Lower render resolution"),
}


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise GsbpError(
            "plots need matplotlib: pip install matplotlib==3.11.2 (or pass --no-plots)"
        ) from exc
    return plt


def _save(fig, path: Path) -> None:
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})


def plot_axis(rows: Sequence[dict], axis: str, names: Sequence[str], path: str | Path) -> None:
    """One sweep axis: per-object 3D IoU (thin), mean and worst-seed mean (thick), 2D mIoU
    of the expected and accumulated finishes (dotted), against the level."""
    plt = _pyplot()
    rows = sorted(rows, key=lambda r: r["condition"][axis])
    x = [r["condition"][axis] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name in names:
        ax.plot(x, [r["iou3d"][name] for r in rows], lw=1, marker=".", alpha=0.7, label=name)
    ax.plot(x, [r["mean3d"] for r in rows], "k-", lw=2.5, marker="o", label="mean 3D IoU")
    ax.plot(x, [r["worst3d"] for r in rows], "k--", lw=1.5, label="worst seed (mean)")
    for finish, style in (("expected", "b:"), ("accumulated", "r:")):
        ax.plot(x, [r["miou2d"][finish] for r in rows], style, lw=1.5, label=f"2D mIoU {finish}")
    xlabel, title = AXIS_TITLES[axis]
    ax.set_xlabel(xlabel)
    ax.set_ylabel("IoU")
    ax.set_title(title)
    ax.set_ylim(0.0, 1.02)
    if axis == "scale":
        ax.set_xscale("log", base=2)
        ax.invert_xaxis()
    ax.axhline(0.9, color="grey", lw=0.8, ls="-.")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    _save(fig, Path(path))
    plt.close(fig)


def plot_comparison(results: Sequence, path: str | Path) -> None:
    """Bars: mean 3D IoU and held-out 2D mIoU of each method, per input condition."""
    from gsbp_ros.evaluation.comparison import describe_condition

    plt = _pyplot()
    conds: list[str] = []
    methods: list[str] = []
    for r in results:
        c = describe_condition(r.condition)
        if c not in conds:
            conds.append(c)
        if r.method not in methods:
            methods.append(r.method)
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.6), sharey=True)
    width = 0.8 / len(methods)
    for ax, metric, title in (
        (axes[0], "mean3d", "mean 3D IoU"),
        (axes[1], "miou2d_heldout", "2D mIoU, held-out views"),
    ):
        for j, method in enumerate(methods):
            vals = []
            for c in conds:
                r = next(
                    r
                    for r in results
                    if r.method == method and describe_condition(r.condition) == c
                )
                vals.append(getattr(r, metric))
            ax.bar([i + j * width for i in range(len(conds))], vals, width, label=method)
        ax.set_xticks([i + width * (len(methods) - 1) / 2 for i in range(len(conds))])
        ax.set_xticklabels(conds, fontsize=7)
        ax.set_title(title)
        ax.set_ylim(0.0, 1.02)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("IoU")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=3, bbox_to_anchor=(0.5, -0.1))
    _save(fig, Path(path))
    plt.close(fig)
