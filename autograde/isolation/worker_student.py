"""A :class:`~autograde.worker.protocol.Student` whose definitions live in a sandboxed worker process.

The grader tests run here, in the trusted process, exactly as under nbgrader; each ``describe``, ``call``,
``value`` and ``has`` becomes a request to the worker, and only checked plain data comes back. A worker that
runs past the time limit, crashes or sends garbage is killed and replaced (its definitions are run again),
and only the request in flight fails, with a message for the student. All calls of one submission share a
time budget (``submission_seconds``, plus the allowance of files handed in with it); once it is used up,
the remaining checks fail at once and the run records an incident.
"""

from __future__ import annotations

import time
from dataclasses import fields
from typing import Any

from autograde.graded_source import GradedSource
from autograde.isolation import replies
from autograde.isolation.sandbox import Child, WorkerCrashed, WorkerTimeout, Zygote
from autograde.worker.protocol import Call, CallResult, Describe, ModuleInfo, Student
from autograde.worker.results import Incident, Kind, StudentError


class WorkerStudent(Student):
    """The Student protocol, served by a sandboxed child of ``zygote`` that ran ``source``'s definitions."""

    def __init__(self, zygote: Zygote, source: GradedSource, budget: float):
        self.zygote, self.source = zygote, source
        self.timeout = zygote.settings.timeout
        self.budget = budget
        self.spent = 0.0
        self.incidents: list[Incident] = [Incident("definition", p) for p in source.problems]
        self._skipped: set[int] = set()
        self._stuck: dict[str, str] = {}
        self._child: Child | None = None

    # ------------------------------------------------------------------------------------------- worker
    @property
    def problems(self) -> list[str]:
        """What went wrong while reading and running the notebook's definitions (for the feedback)."""
        return [i.message for i in self.incidents if i.kind == "definition"]

    def _replace(self) -> None:
        if self._child is not None:
            self._child.kill()
            self._child = None

    def _left(self) -> float:
        """Seconds of the budget left; StudentError (and an incident, once) when there are none."""
        left = self.budget - self.spent
        if left <= 0:
            message = (
                f"the grader stopped running your code: all its calls together took more than {self.budget:g} s "
                "(is something far too slow, or sleeping?)"
            )
            if not any(i.kind == Kind.BUDGET.value for i in self.incidents):
                self.incidents.append(Incident(Kind.BUDGET.value, message))
            raise StudentError(message, Kind.BUDGET)
        return left

    def _worker(self) -> Child:
        """The live child, started (definitions run) if needed; a cell that hangs or crashes is left out."""
        while self._child is None:
            chunks = [(i, c) for i, c in enumerate(self.source.chunks) if i not in self._skipped]
            limit = min(self.timeout, self._left())
            start = time.monotonic()
            child = self.zygote.spawn(limit)
            child.send({"op": "load", "chunks": [c.to_dict() for _, c in chunks]})
            position = 0
            try:
                while True:
                    reply = child.recv(limit + self.zygote.settings.grace)
                    if not isinstance(reply, dict):
                        raise replies.WorkerProtocolError("a reply that is not a message")
                    if reply.get("op") == "loaded":
                        break
                    if reply.get("error"):
                        self.incidents.append(Incident("definition", str(reply["error"])))
                    position += 1
            except (WorkerTimeout, WorkerCrashed, replies.WorkerProtocolError) as exc:
                self.spent += time.monotonic() - start
                if position >= len(chunks):
                    child.kill()
                    raise StudentError(
                        f"running your notebook's definitions stopped the worker ({exc})", Kind.CRASH
                    ) from None
                index, chunk = chunks[position]
                self._skipped.add(index)
                child.kill()
                how = (
                    f"did not finish within {limit:g} s"
                    if isinstance(exc, WorkerTimeout)
                    else f"stopped the grader's worker process ({exc})"
                )
                self.incidents.append(Incident("definition", f"{chunk.label} {how}; it was skipped."))
                continue
            self.spent += time.monotonic() - start
            self._child = child
        return self._child

    def _request(self, message: dict, target: str) -> Any:
        """Send one request; the checked reply value, or StudentError with a message for the student."""
        stuck_key = _stuck_key(message, target)
        if stuck_key in self._stuck:
            raise StudentError(self._stuck[stuck_key], Kind.TIMEOUT)
        child = self._worker()
        limit = min(self.timeout, self._left())
        start = time.monotonic()
        try:
            child.send(message)
            reply = child.recv(limit + self.zygote.settings.grace)
        except WorkerTimeout:
            self._replace()
            return self._give_up(
                target,
                stuck_key,
                f"`{target}` did not finish within {limit:g} s, so the grader stopped it (an endless loop, or far "
                "too slow?)",
            )
        except WorkerCrashed as exc:
            self._replace()
            self.incidents.append(Incident(Kind.CRASH.value, f"{target}: the worker {exc}"))
            raise StudentError(
                f"running your `{target}` ended the grader's worker process: it {exc}.", Kind.CRASH
            ) from None
        except replies.WorkerProtocolError as exc:
            self._replace()
            self.incidents.append(Incident(Kind.UNUSABLE_RESULT.value, f"{target}: {exc}"))
            raise StudentError(
                f"your `{target}` sent back something the grader cannot read ({exc}).", Kind.UNUSABLE_RESULT
            ) from None
        finally:
            self.spent += time.monotonic() - start
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            self._replace()
            raise StudentError(f"your `{target}` sent back something the grader cannot read.", Kind.UNUSABLE_RESULT)
        if not reply["ok"]:
            failure = replies.error(reply)
            if failure.kind is Kind.TIMEOUT or time.monotonic() - start >= limit:
                return self._give_up(target, stuck_key, str(failure))
            raise failure
        return reply.get("value")

    def _give_up(self, target: str, stuck_key: str, message: str) -> None:
        """Fail this request, and every later one on ``target`` with the same stand-ins at once (it would time
        out again; with the grader's stand-ins for the earlier parts it may not)."""
        self.incidents.append(Incident(Kind.TIMEOUT.value, f"{target}: {message}"))
        self._stuck[stuck_key] = f"{message} (skipped: an earlier call of `{target}` ran past the time limit)"
        raise StudentError(message, Kind.TIMEOUT)

    def close(self) -> None:
        self._replace()

    # ---------------------------------------------------------------------------------------- protocol
    def has(self, name: str) -> bool:
        value = self._request({"op": "has", "name": name}, name)
        return value is True

    def value(self, name: str) -> Any:
        return self._request({"op": "value", "name": name}, name)

    def describe_module(self, request: Describe) -> ModuleInfo:
        message = {"op": "describe", **{f.name: getattr(request, f.name) for f in fields(request)}}
        target = request.target
        try:
            return replies.module_info(self._request(message, target))
        except replies.WorkerProtocolError as exc:
            raise StudentError(
                f"your `{target}` sent back a description the grader cannot read ({exc}).", Kind.UNUSABLE_RESULT
            ) from None

    def call(self, call: Call) -> CallResult:
        try:
            return replies.call_result(self._request(call_message(call), call.target), call)
        except replies.WorkerProtocolError as exc:
            raise StudentError(
                f"your `{call.target}` sent back a result the grader cannot read ({exc}).", Kind.UNUSABLE_RESULT
            ) from None


def _stuck_key(message: dict, target: str) -> str:
    """``target``, plus the names the request replaces with the grader's stand-ins, if any."""
    substitutes = message.get("substitutes") or (message.get("call") or {}).get("substitutes") or {}
    return target if not substitutes else f"{target} with stand-ins for {', '.join(sorted(substitutes))}"


def call_message(call: Call) -> dict:
    """A :class:`Call` as a request; the dtype travels as its name (``"float64"``)."""
    message = {f.name: getattr(call, f.name) for f in fields(call)}
    message["dtype"] = str(call.dtype).removeprefix("torch.") if call.dtype is not None else None
    message["state_dict"] = dict(call.state_dict) if call.state_dict is not None else None
    message["watch"] = {label: frozenset(names) for label, names in call.watch.items()}
    return {"op": "call", "call": message}
