"""Launch benchmark workers and collect their results, with a timeout per task.

A batch of tasks goes to one worker process (``worker.py``) under a given
python. The worker announces each task (``@@START id``) and its result
(``@@RESULT {...}``). If a task exceeds its timeout, or the worker dies, the
task is recorded as an error, the process group is killed, and a fresh
worker carries on with the remaining tasks.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "worker.py")
START_MARK = "@@START "
RESULT_MARK = "@@RESULT "

#: Seconds a fresh worker may take to import and announce its first task.
STARTUP_TIMEOUT = 60.0


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _reader(stream, q: queue.Queue) -> None:
    for line in stream:
        q.put(line)
    q.put(None)


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _tail(path: str, limit: int = 300) -> str:
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return ""
    lines = [ln for ln in text.strip().splitlines() if ln.strip() and "[ERROR:" not in ln]
    return " ".join(" ".join(lines[-3:]).split())[-limit:]


def run_batch(python: str, tasks: list[dict], label: str, env: dict | None = None) -> dict:
    """Run ``tasks`` (each with ``id``, ``kind`` and ``timeout`` seconds) under ``python``.

    Returns ``{task id: result dict}``; a task that timed out or crashed maps
    to ``{"error": ...}``.
    """
    results: dict = {}
    pending = list(tasks)
    while pending:
        by_id = {t["id"]: t for t in pending}
        job = {"tasks": [{k: v for k, v in t.items() if k != "timeout"} for t in pending]}
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as jf:
            json.dump(job, jf)
            job_path = jf.name
        err_path = job_path[:-5] + ".stderr"
        with open(err_path, "w") as errf:
            proc = subprocess.Popen([python, WORKER, job_path], stdout=subprocess.PIPE, stderr=errf,
                                    text=True, start_new_session=True, env=env, cwd=HERE)
        q: queue.Queue = queue.Queue()
        threading.Thread(target=_reader, args=(proc.stdout, q), daemon=True).start()
        current = None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        failure = None
        while True:
            try:
                line = q.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                limit = by_id[current]["timeout"] if current else STARTUP_TIMEOUT
                failure = f"timeout after {limit:.0f} s"
                _kill(proc)
                break
            if line is None:
                rc = proc.wait()
                if any(t["id"] not in results for t in pending):
                    failure = f"worker exited with code {rc}: {_tail(err_path)}".rstrip(": ")
                break
            if line.startswith(START_MARK):
                current = line[len(START_MARK):].strip()
                deadline = time.monotonic() + float(by_id[current]["timeout"])
            elif line.startswith(RESULT_MARK):
                msg = json.loads(line[len(RESULT_MARK):])
                results[msg["id"]] = msg["result"]
                current = None
                deadline = time.monotonic() + STARTUP_TIMEOUT
        remaining = [t for t in pending if t["id"] not in results]
        if failure and remaining:
            victim = current if current in by_id else remaining[0]["id"]
            results[victim] = {"error": failure}
            log(f"{label}: task {victim}: {failure}")
            remaining = [t for t in remaining if t["id"] != victim]
        pending = remaining
        for path in (job_path, err_path):
            with contextlib.suppress(OSError):
                os.unlink(path)
    return results
