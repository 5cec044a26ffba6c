"""``ServiceMetrics`` of a server group (metrics.py): every process writes its figures to the
group's directory and any one of them renders the sums. Real processes, since prometheus_client
picks its value store as it is imported; no server, no model (the served group is tested in
test_processes.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.service.test_processes import samples
from wavestream.service.metrics import MULTIPROC_ENV, ServiceMetrics, mark_dead

# one "server": adds its work to the group's figures, prints its pid and the group's exposition
SERVER = """
import os, sys
from tests.service.test_processes import samples
from wavestream.service.metrics import ServiceMetrics
sessions, seconds, jobs = int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
m = ServiceMetrics(sys.argv[1])
for _ in range(sessions):
    m.sessions.labels("enhance", "end").inc()
    m.chunk_latency.labels("enhance").observe(0.003)
m.audio_seconds.labels("enhance", "stream").inc(seconds)
m.connections.inc(sessions)
m.active_sessions.set(sessions)
m.jobs.labels("done").set(jobs)
sys.stdout.write(f"{os.getpid()}\\n")
sys.stdout.buffer.write(m.render())
"""


def server(group_dir, sessions: int = 0, seconds: float = 0.0, jobs: int = 0) -> tuple[int, dict[str, float]]:
    """Run one process of the group to its end: its pid and what it rendered."""
    env = {**os.environ, MULTIPROC_ENV: str(group_dir), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", SERVER, str(group_dir), str(sessions), str(seconds), str(jobs)],
                         env=env, capture_output=True, text=True, check=True, timeout=120).stdout
    pid, text = out.split("\n", 1)
    return int(pid), samples(text)


SESSIONS = 'wavestream_sessions_total{model="enhance",outcome="end"}'
SECONDS = 'wavestream_audio_seconds_total{model="enhance",via="stream"}'
LATENCIES = 'wavestream_chunk_latency_seconds_count{model="enhance"}'
CONNECTIONS = "wavestream_websocket_connections"


def test_group_metrics_sum_every_process_and_keep_the_counts_of_dead_ones(tmp_path):
    first, _ = server(tmp_path, sessions=2, seconds=1.5, jobs=4)
    second, seen = server(tmp_path, sessions=3, seconds=0.25, jobs=5)
    assert seen[SESSIONS] == 5 and seen[SECONDS] == 1.75 and seen[LATENCIES] == 5
    assert seen[CONNECTIONS] == 5 and seen["wavestream_active_sessions"] == 5  # not marked dead yet: live
    assert seen['wavestream_jobs{status="done"}'] == 5  # the latest count, not a sum (one shared job store)

    mark_dead(tmp_path, first)  # as the supervisor does once a server exits
    _, seen = server(tmp_path)  # a server started in its place, which did nothing yet
    assert seen[SESSIONS] == 5 and seen[SECONDS] == 1.75 and seen[LATENCIES] == 5  # the dead one's still count
    assert seen[CONNECTIONS] == 3 and seen["wavestream_active_sessions"] == 3  # its open ones do not

    mark_dead(tmp_path, second)
    _, seen = server(tmp_path, sessions=1, seconds=0.5)
    assert seen[SESSIONS] == 6 and seen[SECONDS] == 2.25 and seen[CONNECTIONS] == 1


def test_group_metrics_refuse_a_process_started_without_the_directory(tmp_path):
    """Values kept in memory would never reach the other servers: refuse instead of under-counting."""
    with pytest.raises(RuntimeError, match=MULTIPROC_ENV):
        ServiceMetrics(tmp_path)


def test_single_server_metrics_are_its_own():
    metrics = ServiceMetrics()
    metrics.sessions.labels("enhance", "end").inc()
    metrics.jobs.labels("done").set(2)
    metrics.active_sessions.set_function(lambda: 7)
    seen = samples(metrics.render().decode())
    assert seen[SESSIONS] == 1 and seen['wavestream_jobs{status="done"}'] == 2
    assert seen["wavestream_active_sessions"] == 7
