"""``.venv/bin/python bench/server.py``: job server latencies and throughput, for docs/benchmarks.md.

Starts a real server subprocess on a temporary data dir and measures, in the same run:
- reference: a plain request round trip (``list_jobs`` with ``limit: 0``) through the client;
- job round trip: ``submit`` of ``system.sleep {"seconds": 0}`` until its ``job_succeeded``;
- throughput: N such jobs submitted at once, all awaited (``--workers`` worker processes);
- cancel: from ``cancel`` to ``job_cancelled`` of a running job;
- crash detection: from SIGKILL of a worker to ``job_failed``.
Prints p50/p99 in milliseconds and the job round trip as a multiple of the request round trip.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from protocol import messages as M  # noqa: E402
from protocol.client import Client  # noqa: E402


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_ms": round(1000 * statistics.median(ordered), 3), "p99_ms": round(1000 * p99, 3)}


def _start_server(data_dir: Path, workers: int) -> tuple[subprocess.Popen[bytes], Path]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "backend",
            "serve",
            "--data-dir",
            str(data_dir),
            "--json",
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        cwd=ROOT,  # `-m backend` from this checkout, wherever the benchmark is started
    )
    assert process.stdout is not None
    ready = json.loads(process.stdout.readline())
    return process, Path(ready["connection_file"])


def _running_pid(client: Client, job_id: str) -> int:
    for event in client.events(job_id, timeout=30):
        if event.type == M.JOB_STATE and event.content.get("state") == M.RUNNING:
            return int(event.content["worker_pid"])
    raise RuntimeError("job never ran")


def run(rounds: int, jobs: int, workers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        process, connection = _start_server(Path(tmp) / "data", workers)
        try:
            with Client.from_connection_file(connection, timeout=30) as client:
                for _ in range(5):  # warm-up: workers started, first imports done
                    client.wait(client.submit("system.sleep", {"seconds": 0}), timeout=60)
                rtt = []
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    client.request(M.LIST_JOBS, {"limit": 0})
                    rtt.append(time.perf_counter() - t0)
                job = []
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    client.wait(client.submit("system.sleep", {"seconds": 0}), timeout=60)
                    job.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                ids = [client.submit("system.sleep", {"seconds": 0}) for _ in range(jobs)]
                for job_id in ids:
                    client.wait(job_id, timeout=120)
                throughput = jobs / (time.perf_counter() - t0)
                cancel = []
                for _ in range(5):
                    job_id = client.submit("system.sleep", {"seconds": 30})
                    _running_pid(client, job_id)
                    t0 = time.perf_counter()
                    client.cancel(job_id)
                    client.wait(job_id, timeout=30)
                    cancel.append(time.perf_counter() - t0)
                crash = []
                for _ in range(3):
                    job_id = client.submit("system.sleep", {"seconds": 30})
                    pid = _running_pid(client, job_id)
                    t0 = time.perf_counter()
                    os.kill(pid, signal.SIGKILL)
                    client.wait(job_id, timeout=30)
                    crash.append(time.perf_counter() - t0)
        finally:
            process.terminate()
            process.wait(10)
    request, job_rt = _percentiles(rtt), _percentiles(job)
    return {
        "request_round_trip": request,
        "job_round_trip": job_rt,
        "job_over_request_p50": round(job_rt["p50_ms"] / request["p50_ms"], 1),
        "throughput_jobs_per_s": round(throughput, 1),
        "workers": workers,
        "cancel_to_cancelled": _percentiles(cancel),
        "sigkill_to_failed": _percentiles(crash),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/server.py", description=__doc__)
    parser.add_argument("--rounds", type=int, default=200, help="samples per latency (default 200)")
    parser.add_argument("--jobs", type=int, default=200, help="jobs for the throughput run (default 200)")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes (default 2)")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.rounds, args.jobs, args.workers), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
