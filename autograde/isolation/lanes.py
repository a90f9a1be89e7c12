"""Lanes: trusted processes, forked from the grading run, that each grade one submission at a time.

A lane is forked once the graders, references and prepared resources are loaded, and talks to the shared
:class:`~autograde.isolation.sandbox.Zygote` over a control channel of its own. Neither lanes nor the zygote run
student code, so a submission can only lose its own points. :class:`Lanes` hands out jobs and enforces, on the
trusted side, what no lane can be trusted to enforce on itself:

- a wall-clock cap per job: a lane that passes it is killed with its workers, and the job is the grader's failure
  (every check fails, flagged for a re-grade);
- a lane that dies (a grader bug: it never runs student code) is replaced and its job tried once more;
- a zygote that stops answering is replaced with a fresh one and fresh lanes; the jobs in flight are tried once
  more, and a job in flight at two such failures is charged for them (its result comes from ``charge``). After
  :data:`MAX_SANDBOX_RESTARTS` failures the sandbox itself is broken: :class:`SandboxError` stops the run.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait
from pathlib import Path
from typing import Generic, TypeVar

import torch

from autograde.isolation.sandbox import SandboxError, Zygote

Job = TypeVar("Job")
Result = TypeVar("Result")
MAX_SANDBOX_RESTARTS = 3


def prepare_grading_process() -> None:
    """Settings for a process that runs many grader sessions: one torch thread, objects frozen out of gc."""
    os.environ["PYTEST_ADDOPTS"] = (os.environ.get("PYTEST_ADDOPTS", "") + " --tb=native").strip()
    torch.set_num_threads(1)
    gc.collect()
    gc.freeze()


def _lane(conn, channel, zygote: Zygote, work: Callable, failed: Callable) -> None:
    """A lane's loop: (index, job) in, (index, result) or ("sandbox", index, message) out; None ends it."""
    prepare_grading_process()
    zygote.use_channel(channel)
    while True:
        message = conn.recv()
        if message is None:
            return
        index, job = message
        try:
            result = work(job, zygote)
        except SandboxError as exc:
            conn.send(("sandbox", index, str(exc)))
            return
        except Exception:  # a grader bug must not stop the batch; the job is flagged for a re-grade
            result = failed(job, "the grader failed on this submission; tell your instructor", traceback.format_exc(8))
        conn.send((index, result))


class _Lane:
    def __init__(self, zygote: Zygote, work: Callable, failed: Callable):
        context = multiprocessing.get_context("fork")
        self.conn, theirs = context.Pipe()
        channel = zygote.open_channel()
        self.process = context.Process(target=_lane, args=(theirs, channel, zygote, work, failed), daemon=True)
        self.process.start()
        theirs.close()
        channel.close()
        self.job: tuple[int, float] | None = None  # (index, deadline)

    def peak_bytes(self) -> int:
        """The most memory the lane has held (its resident high-water mark), while it lives."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return 0
        return next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:")), 0)

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()

    def end(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(timeout=5)
        self.stop()


class Lanes(Generic[Job, Result]):
    """Jobs graded by ``jobs`` lanes over one zygote, kept for the life of the object.

    start_zygote: starts a zygote and waits until it is ready (may raise SandboxError: nothing can be graded);
    work(job, zygote): grades one job in a lane; cap(job): its wall-clock cap in seconds; failed(job, reason,
    details): the result of a job the grader's side failed on; charge(job, message): the result of a job in
    flight at two sandbox failures.
    """

    def __init__(
        self,
        start_zygote: Callable[[], Zygote],
        work: Callable[[Job, Zygote], Result],
        *,
        jobs: int,
        cap: Callable[[Job], float],
        failed: Callable[[Job, str, str], Result],
        charge: Callable[[Job, str], Result],
    ):
        self.start_zygote, self.work, self.jobs = start_zygote, work, max(1, jobs)
        self.cap, self.failed, self.charge = cap, failed, charge
        self.zygote = start_zygote()
        self.lanes: list[_Lane] = []
        self.restarts = 0
        self.peak_bytes = 0  # the largest memory high-water mark of a lane so far

    def _stop(self, lane: _Lane) -> None:
        self.peak_bytes = max(self.peak_bytes, lane.peak_bytes())
        lane.stop()

    def _restart(self, message: str) -> None:
        """Replace the zygote and every lane after the sandbox failed with ``message``."""
        self.restarts += 1
        for lane in self.lanes:
            self._stop(lane)
        self.lanes = []
        self.zygote.close()
        if self.restarts > MAX_SANDBOX_RESTARTS:
            raise SandboxError(f"the sandbox failed {self.restarts} times; the last time: {message}")
        self.zygote = self.start_zygote()

    def run(self, items: Sequence[Job], progress: Callable[[Result], None] | None = None) -> list[Result]:
        """Grade every item; results in order."""
        results: dict[int, Result] = {}
        crashes: dict[int, int] = {}
        sandbox_failures: dict[int, int] = {}
        pending = list(range(len(items)))

        def finish(index: int, result: Result) -> None:
            results[index] = result
            if progress:
                progress(result)

        while pending or any(lane.job for lane in self.lanes):
            self.lanes = [lane for lane in self.lanes if lane.process.is_alive() or lane.job]
            idle = [lane for lane in self.lanes if lane.job is None]
            while pending and (idle or len(self.lanes) < self.jobs):
                lane = idle.pop() if idle else _Lane(self.zygote, self.work, self.failed)
                if lane not in self.lanes:
                    self.lanes.append(lane)
                index = pending.pop(0)
                lane.job = (index, time.monotonic() + self.cap(items[index]))
                lane.conn.send((index, items[index]))
            busy = [lane for lane in self.lanes if lane.job]
            timeout = max(0.0, min(lane.job[1] for lane in busy) - time.monotonic()) if busy else 0.0
            ready = wait([lane.conn for lane in busy] + [lane.process.sentinel for lane in busy], timeout)
            sandbox_message = None
            for lane in busy:
                index, deadline = lane.job
                message = None
                if lane.conn in ready:
                    try:
                        message = lane.conn.recv()
                    except (EOFError, OSError):
                        message = None
                if message is not None and message[0] == "sandbox":
                    sandbox_message = message[2]
                    lane.job = None
                    sandbox_failures[index] = sandbox_failures.get(index, 0) + 1
                    if sandbox_failures[index] >= 2:
                        finish(index, self.charge(items[index], message[2]))
                    else:
                        pending.insert(0, index)
                elif message is not None:
                    lane.job = None
                    finish(message[0], message[1])
                elif lane.process.sentinel in ready or not lane.process.is_alive():
                    lane.job = None
                    self._stop(lane)
                    crashes[index] = crashes.get(index, 0) + 1
                    if crashes[index] < 2:
                        pending.insert(0, index)
                    else:
                        finish(index, self.failed(items[index], "the grader crashed twice on this submission", ""))
                elif time.monotonic() >= deadline:
                    lane.job = None
                    self._stop(lane)
                    reason = (
                        f"grading this submission took more than {self.cap(items[index]):g} s on the grader's "
                        "side, so it was stopped"
                    )
                    finish(index, self.failed(items[index], reason, ""))
            for lane in self.lanes:
                self.peak_bytes = max(self.peak_bytes, lane.peak_bytes())
            if sandbox_message is not None:
                for lane in self.lanes:  # the others' jobs ran on the failed zygote too: they go again
                    if lane.job:
                        pending.insert(0, lane.job[0])
                        lane.job = None
                self._restart(sandbox_message)
        return [results[i] for i in range(len(items))]

    def close(self) -> None:
        for lane in self.lanes:
            self.peak_bytes = max(self.peak_bytes, lane.peak_bytes())
            lane.end()
        self.lanes = []
        self.zygote.close()
