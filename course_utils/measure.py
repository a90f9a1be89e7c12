"""What a computation costs: multiply-adds counted from the operations that run, peak memory, and time.

* :func:`count_multiply_adds` runs a model once under ``torch.utils.flop_counter.FlopCounterMode``, which counts
  the floating-point operations of every matrix product and convolution that executes (a multiply-add is two of
  them); element-wise operations, softmax and reshapes are not counted.
* :func:`peak_memory` measures the largest amount of memory a call holds at once, above what was allocated before
  it: on a GPU with ``torch.cuda.max_memory_allocated``, on a CPU from the torch profiler's memory accounting
  (every allocation and release of the call, in order).
* :func:`time_call` is the median wall time of a few runs after a warm-up, synchronising the GPU.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

_aten = torch.ops.aten


def _attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of q k^T and of the weighted sum of the values, for q (..., S, D), k (..., T, D), v (..., T, Dv)."""
    *batch, S, D = query_shape
    T, Dv = key_shape[-2], value_shape[-1]
    heads = 1
    for n in batch:
        heads *= n
    return 2 * heads * S * T * D + 2 * heads * S * T * Dv


# The CPU kernel of F.scaled_dot_product_attention has no formula in FlopCounterMode (its CUDA kernels do).
_EXTRA_FORMULAS = {
    getattr(_aten, name): _attention_flops
    for name in ("_scaled_dot_product_flash_attention_for_cpu",)
    if hasattr(_aten, name)
}


def count_multiply_adds(model: nn.Module | Callable[..., Any], *inputs: Any) -> int:
    """Multiply-adds of one forward pass ``model(*inputs)`` (under ``torch.no_grad``), counted as it runs.

    Counts the matrix products (``@``, ``einsum``, ``nn.Linear``, attention) and convolutions; element-wise
    operations, softmax, ``unfold`` and other reshapes are free here. Pass one image, e.g. ``x[:1]``, for the
    cost per image.
    """
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS) as counter:
        model(*inputs)
    return counter.get_total_flops() // 2


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence what the profiler's C++ side prints to the process's stderr while it starts and stops."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no file descriptor 2 (some embedded interpreters)
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _cpu_peak(fn: Callable[[], Any]) -> tuple[Any, int]:
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _quiet_stderr():
        prof.__enter__()
    try:
        result = fn()
    finally:
        with _quiet_stderr():
            prof.__exit__(None, None, None)
    events = sorted(  # (time, bytes): + for an allocation, - for a release
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    )
    held = peak = 0
    for _, nbytes in events:
        held += nbytes
        peak = max(peak, held)
    return result, peak


def peak_memory(fn: Callable[[], Any], device: torch.device | str = "cpu") -> tuple[Any, int]:
    """Run ``fn()`` once; return its result and the peak number of bytes it held at once on ``device``.

    The count starts at zero when ``fn`` starts: tensors that existed before (inputs, weights) are not counted,
    tensors ``fn`` allocates are, while they live (its result included). On a GPU this is
    ``torch.cuda.max_memory_allocated`` above the memory allocated before; on a CPU, the running sum of the
    allocations and releases that the torch profiler records during the call.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        result = fn()
        torch.cuda.synchronize(device)
        return result, torch.cuda.max_memory_allocated(device) - before
    if device.type != "cpu":
        raise ValueError(f"peak_memory measures the CPU or a CUDA GPU, not {device}.")
    return _cpu_peak(fn)


def time_call(fn: Callable[[], Any], device: torch.device | str = "cpu", *, repeats: int = 3, warmup: int = 1) -> float:
    """The median wall time of ``repeats`` calls of ``fn()`` in seconds, after ``warmup`` calls (GPU synchronised)."""
    device = torch.device(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
