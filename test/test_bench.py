"""``gsbp bench`` plumbing on tiny rows: measurements come back, tables say what they are.
No speed is asserted anywhere (speeds live in docs/benchmarks.md)."""

from __future__ import annotations

import pytest

from gsbp_ros.bench import machine_description, to_markdown, write_section
from gsbp_ros.bench.worker import run


def _spec(method: str, **kw) -> dict:
    base = {
        "gaussians": 3000,
        "width": 48,
        "height": 36,
        "channels": 40,
        "map": [5, 7],
        "views": 1,
        "device": "cpu",
        "method": method,
    }
    return {**base, **kw}


def test_worker_rows_and_markdown(tmp_path):
    ours = {**_spec("numba"), **run(_spec("numba"))}
    assert ours["gaussians"] > 2900 and ours["nnz"] > 0
    assert len(ours["seconds"]) == 1 and ours["peak_rss_gb"] > 0
    paper = {**_spec("paper", max_chunks=1), **run(_spec("paper", max_chunks=1))}
    assert paper["chunks_measured"] == 1 and paper["chunks_total"] == 2
    paper["ratio"] = paper["median_s"] / ours["median_s"]
    lift = {**_spec("lift", views=2), **run(_spec("lift", views=2))}
    assert lift["views"] == 2 and lift["total_s"] > 0
    failed = {**_spec("paper"), "error": "timed out after 1 s"}
    table = to_markdown([ours, paper, failed, lift])
    assert "ours (numba, CPU)" in table
    assert "(first 1 of 2 chunks)" in table and "| >= " in table  # a lower bound, said so
    assert "not measured: timed out after 1 s" in table
    assert "lift end to end" in table
    doc = tmp_path / "bench.md"
    doc.write_text("# Benchmarks\n\nintro\n\n## other machine\n\nold\n")
    write_section(doc, "## this machine".removeprefix("## "), table)
    write_section(doc, "this machine", "second run")  # replaces its own section only
    text = doc.read_text()
    assert "intro" in text and "## other machine\n\nold" in text
    assert text.count("## this machine") == 1 and "second run" in text
    assert "cores" in machine_description(__import__("torch").device("cpu"))


def test_merge_rows_replaces_what_was_measured_again():
    from gsbp_ros.bench import merge_rows

    def row(method, n, t, **kw):
        return {"method": method, "gaussians": n, "width": 64, "height": 48, "device": "cpu",
                "median_s": t, **kw}  # fmt: skip

    old = [row("numba", 10, 2.0), row("paper", 10, 8.0, ratio=4.0), row("numba", 20, 3.0)]
    merged = merge_rows(old, [row("numba", 10, 1.0), row("lift", 10, 5.0)])
    assert [r["method"] for r in merged] == ["numba", "paper", "numba", "lift"]
    assert merged[0]["median_s"] == 1.0 and merged[2]["median_s"] == 3.0
    assert merged[1]["ratio"] == 8.0  # redone against the new ours-row


def test_startup_bench_finds_the_params_file_in_the_source_tree_and_an_install(
    tmp_path, monkeypatch
):
    """Without AMENT_PREFIX_PATH (no ``source install/setup.bash``) the bench still hands the
    node a params file that exists, never a path that only looks plausible."""
    from gsbp_ros.bench import startup

    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    found = startup._params_file()
    assert found.is_file() and found.name == "gsbp.yaml"
    assert found.read_text() == (startup.Path(__file__).parents[1] / "config/gsbp.yaml").read_text()

    # the colcon layout: install/gsbp_ros/lib/python3.X/site-packages/gsbp_ros/bench/startup.py
    prefix = tmp_path / "install" / "gsbp_ros"
    module = prefix / "lib/python3.11/site-packages/gsbp_ros/bench/startup.py"
    module.parent.mkdir(parents=True)
    module.write_text("")
    (prefix / "share/gsbp_ros/config").mkdir(parents=True)
    (prefix / "share/gsbp_ros/config/gsbp.yaml").write_text("x: 1\n")
    monkeypatch.setattr(startup, "__file__", str(module))
    assert startup._params_file() == prefix / "share/gsbp_ros/config/gsbp.yaml"
    (prefix / "share/gsbp_ros/config/gsbp.yaml").unlink()
    with pytest.raises(FileNotFoundError, match=r"gsbp\.yaml not found"):
        startup._params_file()


def test_host_description_reads_proc_and_falls_back(tmp_path, monkeypatch):
    from gsbp_ros import hostinfo

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU @ 3.0GHz\nflags\t: fpu\n")
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       25165824 kB\nMemFree: 1 kB\n")
    real = hostinfo.Path
    files = {"/proc/cpuinfo": cpuinfo, "/proc/meminfo": meminfo}
    monkeypatch.setattr(hostinfo, "Path", lambda p: real(files.get(p, p)))
    assert hostinfo.cpu_model() == "Test CPU @ 3.0GHz"
    assert hostinfo.memory_gib() == 24.0
    files.update({"/proc/cpuinfo": tmp_path / "none", "/proc/meminfo": tmp_path / "none"})
    assert hostinfo.cpu_model() and hostinfo.memory_gib() is None
