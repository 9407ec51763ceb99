"""`hflabels bench`'s CPU split: per-request CPU of the client, the frontend and its workers."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from lab.cpu_split import CpuSplit, cpu_seconds, descendants, measure_cpu


def fake_process(proc, pid, children=(), utime=0, stime=0, name="java"):
    task = proc / str(pid) / "task" / str(pid)
    task.mkdir(parents=True)
    (task / "children").write_text(" ".join(map(str, children)) + (" " if children else ""))
    # Field 14 and 15 (utime, stime) after the name; the name may hold spaces and parentheses.
    after = ["S"] + ["0"] * 10 + [str(utime), str(stime)] + ["0"] * 5
    (proc / str(pid) / "stat").write_text(f"{pid} ({name}) " + " ".join(after))


def test_descendants_and_cpu_seconds_read_proc(tmp_path):
    fake_process(tmp_path, 10, children=(11, 12), utime=300, stime=100)
    fake_process(tmp_path, 11, children=(13,), name="python (worker) x")
    fake_process(tmp_path, 12)
    fake_process(tmp_path, 13, utime=50, stime=50)
    assert sorted(descendants(10, tmp_path)) == [11, 12, 13]
    assert cpu_seconds(10, tmp_path) == pytest.approx(400 / 100, rel=0.5)  # ticks per second is 100 on Linux
    assert cpu_seconds(99, tmp_path) is None


def test_per_request_shares_and_the_busy_share():
    split = CpuSplit(client=0.1, frontend=0.2, workers=1.7, wall=1.0, cores=2)
    assert split.per_request_ms(100) == {"client": 1.0, "frontend": 2.0, "workers": 17.0, "busy_share": 1.0}
    both = split.plus(split)
    assert both.per_request_ms(200)["workers"] == 17.0 and both.wall == 2.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")
def test_a_busy_worker_under_an_idle_frontend_is_counted_as_the_workers():
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\ntime.sleep(30)"
    parent = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys, time\n"
                               f"subprocess.Popen([sys.executable, '-c', {busy!r}])\ntime.sleep(30)"])  # fmt: skip
    try:
        deadline = time.time() + 10
        while not descendants(parent.pid) and time.time() < deadline:
            time.sleep(0.05)
        with measure_cpu(parent.pid) as split:
            time.sleep(1.0)
        assert split.workers >= 0.3 and split.frontend < 0.2 and split.wall >= 1.0
    finally:
        for child in descendants(parent.pid):
            subprocess.run(["kill", str(child)], check=False)
        parent.kill()
        parent.wait()
