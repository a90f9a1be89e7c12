"""The grading tools every notebook's grader uses: seeded inputs and reference weights, student calls, the
grader's stand-ins for earlier parts, a built-in the exercise forbids, and the checks that several notebooks
make (gradients, dropout statistics, an error that must be raised, an architecture, a multiple-choice answer).

Known mistakes have one form everywhere: a :class:`autograde.compare.Mistake` (a name counted in class reports,
what the mistake returns, the message that names it), tried in order by :func:`autograde.compare.assert_matches`
when the student's value differs from the reference. Each notebook keeps its own in the ``mistakes`` module of
its folder.

Parts built on earlier parts are graded with the grader's stand-ins for those parts when the student's own
parts give a wrong result (:class:`StandIns`, :func:`own_or_stand_ins`), so that every mistake costs its points
once, in the part where it is made; a 0-point diagnostic (:func:`blame_earlier_part`) says which earlier part to
look at.

What does not depend on the student (reference weights, inputs, the reference's outputs) is computed once per
grading process (:func:`computed_once`). A gradient check proves back-propagation only: the student's gradients
against centred differences of their own forward pass (:func:`assert_gradients_follow_forward`), so that a mistake in
the forward pass is not charged again there.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from functools import cache, cached_property, wraps
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import torch
from torch import nn

from autograde.compare import assert_matches
from autograde.worker.in_process import stand_ins, substituted
from autograde.worker.protocol import Call, CallResult, ModuleInfo, Student
from autograde.worker.results import GradingFailure, Kind, StudentError

CUDA_HINT = (
    "your code only runs on CUDA: it moves a tensor to 'cuda' itself. Create new tensors on the input's device "
    "(e.g. torch.sqrt(torch.tensor(C, device=x.device)) or simply math.sqrt(C)) so the module runs on any device."
)


def seeded(shape: tuple[int, ...], seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A reproducible standard-normal tensor of ``shape``."""
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


# ------------------------------------------------------------------------------------------- once per run
Result = TypeVar("Result")


def computed_once(fn: Callable[..., Result]) -> Callable[..., Result]:
    """``fn`` computed once per grading process for each set of arguments, then served from memory.

    For what does not depend on the student: reference weights, inputs, seeds and the reference's outputs, as
    pure functions of a test's parameters (shapes, seeds, names; hashable). A grader module is imported once per
    process and reused by every submission, and a grading run fills these caches before its lanes fork, so every
    submission after the first skips the computation. Never pass student data. Each call returns a fresh copy
    (tensors cloned, dicts, lists and tuples rebuilt), so a caller that changes what it gets cannot change what the
    next submission is graded against.
    """
    cached = cache(fn)

    @wraps(fn)
    def copy_of_cached(*args, **kwargs):
        return _fresh(cached(*args, **kwargs))

    copy_of_cached.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    return copy_of_cached


def _fresh(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_fresh(v) for v in value)
    if isinstance(value, (int, float, str, bool, type(None))):
        return value
    raise TypeError(f"computed_once caches tensors and plain containers of them, not {type(value).__name__}")


# ------------------------------------------------------------------------------------------- built-ins
def forbid_watched(result: CallResult, instead: str) -> CallResult:
    """``result``, unless its call ran one of the operations it watched (:attr:`Call.watch`, a built-in the
    exercise is to write by hand): then a FORBIDDEN_CALL failure naming them, followed by ``instead`` (what the
    exercise asks for instead)."""
    if result.watched_used:
        raise GradingFailure(f"your code calls {', '.join(result.watched_used)}: {instead}", Kind.FORBIDDEN_CALL)
    return result


# ------------------------------------------------------------------------------------------- stand-ins
def module_source(module: str) -> str:
    """The source text of the module named ``module`` (found as an import would find it, not run)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise ModuleNotFoundError(f"no Python source for the module {module}")
    return Path(spec.origin).read_text(encoding="utf-8")


@dataclass(frozen=True)
class StandIns:
    """The grader's stand-ins for the earlier parts a part builds on: simple objects with the contract's names,
    attributes and shapes (not the solutions), defined in ``module`` (a module of the notebook's folder that
    imports only torch), each under its own name.

    ``names``: the stand-ins this part uses; ``reference``: the reference module whose globals of those names
    they replace when the reference is built "with stand-ins". The student's worker gets the module's source
    (:attr:`sources`, what :attr:`Call.substitutes` ships), and the reference side runs the same text.
    """

    module: str
    names: tuple[str, ...]
    reference: ModuleType

    @cached_property
    def sources(self) -> dict[str, str]:
        """name -> the source that defines it (the whole module, for each name)."""
        source = module_source(self.module)
        return {name: source for name in self.names}

    @cached_property
    def objects(self) -> dict[str, Any]:
        """name -> the stand-in object, defined by running :attr:`sources`."""
        return stand_ins(self.sources)

    def in_reference(self, enabled: bool = True) -> AbstractContextManager[None]:
        """Within the block, the reference module is built with the stand-ins in place of the earlier parts
        (when ``enabled``; otherwise as it is)."""
        return substituted(vars(self.reference), self.objects) if enabled else nullcontext()


# Failures that the earlier parts' stand-ins cannot cure. Any other (an error, a timeout, a crash or a forbidden
# call inside an earlier part) is retried with the stand-ins, so it costs points only in the part where it is made.
_NOT_WORTH_A_RETRY = frozenset({Kind.BUDGET, Kind.GRADER_ERROR, Kind.UNREADABLE, Kind.MISSING_FILE})

Answer = TypeVar("Answer", CallResult, ModuleInfo)


def own_or_stand_ins(
    student: Student, call: Call, stand_ins: StandIns, check: Callable[[CallResult, bool], None]
) -> CallResult:
    """Grade a part built on earlier parts so that an earlier part's mistake is charged to that part only.

    ``check(result, with_stand_ins)`` compares a result with the reference (built with the same stand-ins when
    ``with_stand_ins``, see :meth:`StandIns.in_reference`) and raises when they differ. The student's composition
    is checked first with their own earlier parts; when that fails, again with the earlier parts replaced by the
    grader's stand-ins. Returns the result that passed. A composition that is wrong with the stand-ins too fails
    with the message of that check.
    """
    return _own_then_stand_ins(
        lambda sources: student_call(student, replace(call, substitutes=sources)), stand_ins, check
    )


def describe_own_or_stand_ins(
    student: Student,
    target: str,
    stand_ins: StandIns,
    check: Callable[[ModuleInfo, bool], None],
    args: tuple = (),
    kwargs: dict | None = None,
) -> ModuleInfo:
    """:func:`own_or_stand_ins` for the structure of ``target(*args, **kwargs)`` (a :class:`ModuleInfo`)."""
    return _own_then_stand_ins(
        lambda sources: student.describe(target, args, kwargs, substitutes=sources), stand_ins, check
    )


def _own_then_stand_ins(
    ask: Callable[[dict[str, str]], Answer], stand_ins: StandIns, check: Callable[[Answer, bool], None]
) -> Answer:
    own = None
    try:
        own = ask({})
        check(own, False)
        return own
    except (AssertionError, StudentError) as exc:
        if isinstance(exc, StudentError) and exc.kind in _NOT_WORTH_A_RETRY:
            raise
        own_failure = exc
    try:
        answer = ask(stand_ins.sources)
    except StudentError:
        raise own_failure from None
    if own is not None and _same(own, answer):
        raise own_failure  # the stand-ins were not used (e.g. the earlier part is inlined): the first message holds
    check(answer, True)
    return answer


def _same(a: CallResult | ModuleInfo, b: CallResult | ModuleInfo) -> bool:
    """True when two call results carry the same output tensors (compared exactly). A module's structure is never
    taken as the same: checked again, the same structure fails the same way."""
    if isinstance(a, ModuleInfo) or isinstance(b, ModuleInfo):
        return False
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
    right, the part's own (pointed) checks report the difference and this passes.

    The suspects' checks (small) run first: when every earlier part is right, ``call`` (often a whole model) is
    not run at all."""
    culprit = next((name for name, suspect in suspects if _fails(suspect)), None)
    if culprit is None:
        return
    try:
        check(student_call(student, call), False)
        return
    except (AssertionError, StudentError):
        pass
    raise AssertionError(
        f"{what} differs from the reference with your own {culprit}, which has a mistake of its own (see the "
        f"checks of {culprit}). This costs no points here: this part is graded with the grader's stand-in "
        f"for {culprit}."
    ) from None


def _fails(check: Callable[[], None]) -> bool:
    """Whether ``check`` (a check of student code) fails."""
    try:
        check()
    except (AssertionError, StudentError):
        return True
    return False


# ------------------------------------------------------------------------------------------- checks
def assert_gradients_follow_forward(
    ask: Callable[[Call], CallResult],
    call: Call,
    result: CallResult,
    input_names: Sequence[str],
    *,
    seed: int,
    what: str,
) -> None:
    """The gradients of the student's call (``result``, run as ``call`` with ``grad_outputs``) agree with the
    student's own forward pass: along random directions u, <gradient, u> equals the centred difference
    (f(x + eps u) - f(x - eps u)) . grad_outputs / (2 eps) of the call's (first) output, computed by ``ask``
    (the student's calls, float64).

    This proves that back-propagation works (nothing detached, no operation autograd cannot follow) and nothing
    about the forward pass, which other checks grade: a forward-pass mistake is not charged here again.
    ``input_names``: a name for each input of ``call`` ("" for one that is not differentiated, such as an int);
    the parameters are included when ``call`` loads a state dict. One random direction through all of them is
    tried first (two calls); when it disagrees, each input and the parameters on their own, to name the culprit.
    A step of 1e-5 and a relative tolerance of 1e-6 suit float64; a forward pass that rounds to float32 inside
    is tried again with a step of 1e-3 and a tolerance of 1e-3 (a detached path is off by far more).
    """
    generator = torch.Generator().manual_seed(seed)
    inputs = {i: x for i, (name, x) in enumerate(zip(input_names, call.inputs, strict=True)) if name}
    params = {n: call.state_dict[n] for n in result.param_grads} if call.state_dict is not None else {}
    directions = {
        **{("input", i): torch.randn(x.shape, generator=generator, dtype=x.dtype) for i, x in inputs.items()},
        **{("param", n): torch.randn(p.shape, generator=generator, dtype=p.dtype) for n, p in params.items()},
    }
    grads = {
        **{("input", i): _gradient(result.input_grads, i, inputs[i], input_names[i]) for i in inputs},
        **{("param", n): _gradient(result.param_grads, n, params[n], n) for n in params},
    }

    def disagreement(keys: Sequence[tuple[str, Any]]) -> str:
        """How <gradient, u> along the directions of ``keys`` differs from the centred difference ("" if not)."""
        found = ""
        for eps, rtol, atol in ((1e-5, 1e-6, 1e-8), (1e-3, 1e-3, 1e-5)):
            found = measured_difference(keys, eps, rtol, atol)
            if not found:
                return ""
        return found

    def measured_difference(keys: Sequence[tuple[str, Any]], eps: float, rtol: float, atol: float) -> str:
        predicted = sum(float((grads[key] * directions[key]).sum()) for key in keys)
        outputs = []
        for sign in (1.0, -1.0):
            moved_inputs = list(call.inputs)
            moved_state = dict(call.state_dict) if call.state_dict is not None else None
            for kind, key in keys:
                if kind == "input":
                    moved_inputs[key] = call.inputs[key] + sign * eps * directions[(kind, key)]
                else:
                    moved_state[key] = call.state_dict[key] + sign * eps * directions[(kind, key)]
            moved = replace(call, inputs=tuple(moved_inputs), state_dict=moved_state, grad_outputs=None)
            output = ask(moved).output
            outputs.append(output[0] if isinstance(output, (tuple, list)) else output)
        if not all(isinstance(o, torch.Tensor) and o.shape == call.grad_outputs.shape for o in outputs):
            return "the output of the moved inputs has another shape"
        measured = float(((outputs[0] - outputs[1]) * call.grad_outputs).sum()) / (2 * eps)
        if abs(predicted - measured) <= atol + rtol * max(abs(predicted), abs(measured), 1.0):
            return ""
        return (
            f"autograd's directional derivative {predicted:.6g}, your forward pass's centred difference {measured:.6g}"
        )

    if not disagreement(list(directions)):
        return
    names = {key: (input_names[key[1]] if key[0] == "input" else "the weights") for key in directions}
    culprits = []
    for name in dict.fromkeys(names.values()):
        keys = [key for key in directions if names[key] == name]
        difference = disagreement(keys)
        if difference:
            culprits.append(f"{name} ({difference})")
    raise AssertionError(
        f"{what}: the gradients do not agree with your own forward pass along a random direction, for "
        f"{', '.join(culprits) or 'the inputs and weights together'}. Is part of the computation detached "
        "(.detach(), .data, .item(), torch.no_grad(), a tensor rebuilt with torch.tensor(...))?"
    )


def _gradient(grads: Sequence | Mapping, key: Any, like: torch.Tensor, name: str) -> torch.Tensor:
    """The gradient ``grads[key]`` as a tensor shaped like ``like`` (a missing one is zero: nothing flows)."""
    try:
        got = grads[key]
    except (IndexError, KeyError):
        got = None
    if got is None:
        return torch.zeros_like(like)
    if not isinstance(got, torch.Tensor) or got.shape != like.shape:
        raise AssertionError(
            f"the gradient of {name} has shape {tuple(getattr(got, 'shape', ()))}, expected {tuple(like.shape)}"
        )
    return got.to(like.dtype)


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
    """``attempt`` (student calls) must raise one of the exception types ``errors`` (any type when empty); returns
    the error. A failure that is not the student's exception (a timeout, a crash) is passed on as it is.

    what: the call in words ("MultiHeadAttention(10, 3)"); otherwise: what to do when nothing was raised.
    """
    try:
        attempt()
    except StudentError as exc:
        if exc.kind is not Kind.STUDENT_ERROR:
            raise
        if not errors or exc.raised(*errors):
            return exc
        raise AssertionError(f"{what} raised, but not a {' or '.join(errors)}: {exc}") from None
    raise AssertionError(f"{what} did not raise an error: {otherwise}")


def parameter_differences(got: Mapping[str, tuple[int, ...]], want: Mapping[str, tuple[int, ...]]) -> str:
    """How the parameter shapes ``got`` differ from ``want`` (name -> shape), in words ("" when they do not)."""
    missing = sorted(want.keys() - got.keys())
    unexpected = sorted(got.keys() - want.keys())
    resized = sorted(k for k in want.keys() & got.keys() if tuple(want[k]) != tuple(got[k]))
    if not (missing or unexpected or resized):
        return ""
    return f"missing parameters {missing}, unexpected {unexpected}, wrong shapes {resized}"


def check_layers(info: ModuleInfo, what: str, expected: nn.Sequential, *, sizes: str) -> None:
    """The architecture of a model built as an ``nn.Sequential``: the student's (``info``) has ``expected``'s
    layers, in order, and its parameters (names and shapes). what: the model in words ("late_attention_cnn()");
    sizes: what to check when the parameters differ ("check the channel counts")."""
    assert info.type_name == "Sequential", f"{what} should return an nn.Sequential, got {info.type_name}"
    want = [type(layer).__name__ for layer in expected]
    got = [kind for _, kind in info.children]
    assert got == want, f"{what} has the layers {got}; expected {want}"
    differences = parameter_differences(info.parameters, {n: tuple(p.shape) for n, p in expected.named_parameters()})
    count = sum(p.numel() for p in expected.parameters())
    assert not differences, (
        f"{what} has {info.num_parameters:,} parameters, expected {count:,} ({differences}): {sizes}"
    )


def call_text(target: str, *args: object, **kwargs: object) -> str:
    """A call in words, as the student writes it: ``VisionTransformer(img_size=8, pool='cls')``."""
    return f"{target}({', '.join([*map(repr, args), *(f'{k}={v!r}' for k, v in kwargs.items())])})"


def check_choice(student: Student, name: str, right: int, hint: str, options: Sequence[int] = (1, 2, 3, 4)) -> None:
    """A multiple-choice answer: ``name`` holds one of ``options``, and the right one."""
    answer = student.value(name)
    choices = ", ".join(map(str, options[:-1])) + f" or {options[-1]}"
    assert answer in options, f"{name} is {answer!r}; set it to {choices}"
    assert answer == right, f"that is not the right choice{': ' + hint if hint else ''}"
