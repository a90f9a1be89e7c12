"""Helpers shared by the graders: seeded inputs, reference weights, student calls, and the checks that every
notebook makes (gradients, dropout statistics, an error that must be raised, a multiple-choice answer).

Known mistakes have one pattern everywhere: a :class:`Mistake` names the mistake, says how to compute what
it returns, and what to tell the student; :func:`autograde.compare.assert_matches` tries them in order when
the student's value differs from the reference.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from autograde.compare import assert_matches
from autograde.results import Kind, StudentError
from autograde.student import Call, CallResult, Student

CUDA_HINT = (
    "your code only runs on CUDA: it moves a tensor to 'cuda' itself. Create new tensors on the input's device "
    "(e.g. torch.sqrt(torch.tensor(C, device=x.device)) or simply math.sqrt(C)) so the module runs on any device."
)


@dataclass(frozen=True)
class Mistake:
    """A known mistake: what it returns (computed only when needed) and the message that names it."""

    name: str
    compute: Callable[[], torch.Tensor]
    message: str

    def hint(self) -> tuple[Callable[[], torch.Tensor], str]:
        return self.compute, self.message


def hints(mistakes: Iterable[Mistake]) -> list[tuple[Callable[[], torch.Tensor], str]]:
    """The ``hints`` argument of :func:`~autograde.compare.assert_matches` for ``mistakes``, in order."""
    return [m.hint() for m in mistakes]


def seeded(shape: tuple[int, ...], seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A reproducible standard-normal tensor."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def reference_state(module: nn.Module, seed: int, scale: float = 0.5) -> dict[str, torch.Tensor]:
    """Re-initialise ``module`` from ``seed`` (N(0, scale^2), non-zero everywhere); return its float64 state dict."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * scale)
    return {k: v.double() for k, v in module.state_dict().items()}


# What torch raises when code asks for a GPU the grading machine lacks: "Torch not compiled with CUDA enabled" (a
# CPU-only build), "Found no NVIDIA driver on your system" (a CUDA build without a driver), and their variants.
_NO_CUDA_HERE = re.compile(r"cuda|nvidia", re.IGNORECASE)


def student_call(student: Student, call: Call) -> CallResult:
    """``student.call`` with the CUDA mistake recognised in the message."""
    try:
        return student.call(call)
    except StudentError as exc:
        if _NO_CUDA_HERE.search(str(exc)):
            raise StudentError(f"{exc}\n{CUDA_HINT}", exc.kind, exc.exc_type) from None
        raise


# Failures that the earlier parts' stand-ins cannot cure. Any other (an error, a timeout, a crash or a forbidden
# call inside an earlier part) is retried with the stand-ins, so it costs points only in the part where it is made.
_NOT_WORTH_A_RETRY = frozenset({Kind.BUDGET, Kind.GRADER_ERROR, Kind.UNREADABLE, Kind.MISSING_FILE})


def own_or_stand_ins(
    student: Student, call: Call, stand_in_sources: dict[str, str], check: Callable[[CallResult, bool], None]
) -> bool:
    """Grade a part built on earlier parts so that an earlier part's mistake is charged to that part only.

    ``check(result, with_stand_ins)`` compares a result with the reference (built with the same stand-ins when
    ``with_stand_ins``) and raises when they differ. The student's composition is checked first with their own
    earlier parts; when that fails, it is checked again with the earlier parts replaced by the grader's
    stand-ins (``stand_in_sources``: name -> source). Returns True when the student's own parts were used.
    A composition that is wrong with the stand-ins too fails with the message of that check.
    """
    own_result = None
    try:
        own_result = student_call(student, call)
        check(own_result, False)
        return True
    except (AssertionError, StudentError) as exc:
        if isinstance(exc, StudentError) and exc.kind in _NOT_WORTH_A_RETRY:
            raise
        own_failure = exc
    try:
        result = student_call(student, replace(call, substitutes=stand_in_sources))
    except StudentError:
        raise own_failure from None
    if own_result is not None and _same_outputs(own_result, result):
        raise own_failure  # the stand-ins were not used (e.g. the earlier part is inlined): the first message holds
    check(result, True)
    return False


def _same_outputs(a: CallResult, b: CallResult) -> bool:
    """True when two results carry the same output tensors (compared exactly)."""
    if len(a.outputs) != len(b.outputs):
        return False
    for x, y in zip(a.outputs, b.outputs, strict=True):
        xs, ys = (x if isinstance(x, tuple) else (x,)), (y if isinstance(y, tuple) else (y,))
        if len(xs) != len(ys):
            return False
        for u, v in zip(xs, ys, strict=True):
            if isinstance(u, torch.Tensor) and isinstance(v, torch.Tensor):
                if u.shape != v.shape or u.dtype != v.dtype or not torch.equal(u, v):
                    return False
            elif u is not v and u != v:
                return False
    return True


def blame_earlier_part(
    student: Student,
    call: Call,
    check: Callable[[CallResult, bool], None],
    suspects: Sequence[tuple[str, Callable[[], None]]],
    what: str,
) -> None:
    """A diagnostic (no points): ``what`` built from the student's own earlier parts. When it differs from the
    reference because an earlier part fails its own check (``suspects``: (name, check), tried in order), say
    which; a part's mistake is charged to that part, this only says where to look. When the earlier parts are
    right, the part's own (pointed) checks report the difference and this passes."""
    try:
        check(student_call(student, call), False)
        return
    except (AssertionError, StudentError) as exc:
        own = exc
    for name, suspect in suspects:
        try:
            suspect()
        except (AssertionError, StudentError):
            raise AssertionError(
                f"{what} differs from the reference with your own {name}, which has a mistake of its own (see the "
                f"checks of {name}). This costs no points here: this part is graded with the grader's stand-in "
                f"for {name}."
            ) from None
    del own  # the earlier parts are right: the part's own checks report the difference


def assert_gradients_match(
    result: CallResult,
    input_leaves: Sequence[tuple[str, torch.Tensor]],
    reference: nn.Module | None = None,
    *,
    on: str = "",
    atol: float,
    rtol: float,
) -> None:
    """The student's input gradients equal the ``.grad`` of the reference's ``input_leaves`` (name, leaf), and,
    when ``reference`` is given, every parameter gradient equals the reference's."""
    suffix = f" on {on}" if on else ""
    for (name, leaf), got in zip(input_leaves, result.input_grads, strict=False):
        assert_matches(got, leaf.grad, what=f"the gradient of {name}{suffix}", atol=atol, rtol=rtol)
    if reference is not None:
        for name, p in reference.named_parameters():
            assert_matches(
                result.param_grads.get(name), p.grad, what=f"the gradient of {name}{suffix}", atol=atol, rtol=rtol
            )


def check_dropout_statistics(
    after: torch.Tensor, clean: torch.Tensor, p: float, what: str, *, apply_to: str = "the attention weights"
) -> None:
    """``after`` is ``clean`` (no zeros) passed through dropout(p): about p of it is 0, the rest is clean/(1-p)."""
    kept = after != 0
    dropped = 1 - kept.double().mean().item()
    assert abs(dropped - p) < 0.03, (
        f"{what}: {dropped:.1%} of {apply_to} are zero in training mode with dropout p={p}; expected about {p:.0%}."
    )
    survivors, want = after[kept], clean[kept]
    if torch.allclose(survivors, want, atol=1e-9, rtol=1e-7):
        raise AssertionError(
            f"{what}: the values that survive dropout are not rescaled by 1/(1-p); nn.Dropout does this for you."
        )
    assert_matches(survivors, want / (1 - p), what=f"{what}: the values that survive dropout", atol=1e-9, rtol=1e-7)


def must_raise(attempt: Callable[[], object], errors: tuple[str, ...], *, what: str, otherwise: str) -> StudentError:
    """``attempt`` (a student call) must raise one of the exception types ``errors``; returns the error.

    what: the call in words ("MultiHeadAttention(10, 3)"); otherwise: what to do when nothing was raised.
    """
    try:
        attempt()
    except StudentError as exc:
        if exc.kind is Kind.STUDENT_ERROR and exc.raised(*errors):
            return exc
        if exc.kind is not Kind.STUDENT_ERROR:
            raise
        raise AssertionError(f"{what} raised, but not a {' or '.join(errors)}: {exc}") from None
    raise AssertionError(f"{what} did not raise an error: {otherwise}")


def check_choice(student: Student, name: str, right: int, hint: str, options: Sequence[int] = (1, 2, 3, 4)) -> None:
    """A multiple-choice answer: ``name`` holds one of ``options``, and the right one."""
    answer = student.value(name)
    choices = ", ".join(map(str, options[:-1])) + f" or {options[-1]}"
    assert answer in options, f"{name} is {answer!r}; set it to {choices}"
    assert answer == right, f"that is not the right choice{': ' + hint if hint else ''}"
