"""Notebook 1 on a CPU: what its trainings cost, and how long its whole CPU path takes.

Two measurements, both on the CPU (the GPU is hidden), from the repository root:

    python -m bench.notebook1 --step-times [--repeats 5]
    python -m bench.notebook1 [--root DIR]

``--step-times`` times one training step (forward, cross-entropy, backward, Adam) of each of notebook 1's four
networks on a batch of 64 CIFAR-10 images, as the median of ``--repeats`` steps after ``--warmup`` steps (the
first steps of a fresh model and optimizer are slower: memory is allocated, kernels are chosen), and one
evaluation pass (forward only) over a batch of 64, with the time per epoch of 766 steps. This is the one
measurement of the vanilla CNN's speed that notebooks 1 and 5 quote.

Without ``--step-times`` it runs the solution notebook top to bottom as a student with the solution would on a
CPU, in full mode (``COURSE_FAST=0``) on the full-size training set in ``--root``, its hidden-test cells left
out, and prints each part's and each long cell's seconds and the total (the time the notebook's introduction
states for the CPU path), and the validation accuracy of each of Part 4's runs. Beside the wall time it prints
the CPU time the kernel used (both cores count), which a busy machine inflates less than the wall time. Both print
the load average before and after, since a busy machine slows them (and another process that keeps both cores
busy can slow torch's small operations far more than in proportion).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from datetime import datetime
from pathlib import Path

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-approx"
NOTEBOOK = Path(__file__).resolve().parents[1] / "solutions" / "01_self_attention_cnn" / "01_self_attention_cnn.ipynb"
BATCHES_PER_EPOCH = 766  # 49,000 training images in batches of 64
PART4_CELL = "code-29"  # the id of the cell that compares the four networks over seeds


def _load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def step_times(root: str, repeats: int, warmup: int) -> None:
    import torch
    import torch.nn.functional as F

    from autograde.assignments.self_attention_cnn import reference as cnn
    from course_utils.loaders import get_loaders
    from course_utils.measure import time_call

    cpu = torch.device("cpu")
    x, y = next(iter(get_loaders(64, dataset="cifar10", root=root, device=cpu, download=False).train))
    print(f"CPU, {torch.get_num_threads()} threads of {os.cpu_count()} cores; torch {torch.__version__}; {_load()}")
    print(f"{'network':>18} {'s per step':>11} {'s per epoch':>12} {'eval s per batch':>17}")
    for name, build in [
        ("vanilla CNN", cnn.vanilla_cnn),
        ("early attention", cnn.early_attention_cnn),
        ("late attention", cnn.late_attention_cnn),
        ("double attention", cnn.double_attention_cnn),
    ]:
        torch.manual_seed(0)
        model = build()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(model=model, optimizer=optimizer) -> None:
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()

        seconds = time_call(step, cpu, repeats=repeats, warmup=warmup)  # the first steps are slower (allocation)
        model.eval()
        with torch.no_grad():
            evaluation = time_call(lambda model=model: model(x), cpu, repeats=repeats, warmup=warmup)
        print(f"{name:>18} {seconds:>11.3f} {seconds * BATCHES_PER_EPOCH:>12.0f} {evaluation:>17.3f}")
    print(_load())


def _seconds(cell) -> float:
    timing = cell.metadata.get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not start or not end:
        return 0.0
    return (
        datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(start.replace("Z", "+00:00"))
    ).total_seconds()


# Injected first: records the kernel's CPU time (user + system, every thread) of each cell that follows.
CPU_TIMES = """
import resource

_cpu_times = []


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _after(result) -> None:
    if _cpu_times:  # not after this cell, which registered the hooks
        _cpu_times[-1] += _cpu()


get_ipython().events.register("pre_run_cell", lambda info: _cpu_times.append(-_cpu()))
get_ipython().events.register("post_run_cell", _after)
"""


def cpu_path(root: str) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells = [c for c in nb.cells if not c.metadata.get("nbgrader", {}).get("grade_id", "").endswith("_tests")]
    nb.cells.insert(0, nbformat.v4.new_code_cell(CPU_TIMES))
    nb.cells.append(nbformat.v4.new_code_cell("import json\nprint(json.dumps(_cpu_times[:-1]))"))
    env = {"COURSE_FAST": "0", "COURSE_DATA": root, "CUDA_VISIBLE_DEVICES": "", "MPLBACKEND": "Agg"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    print(f"notebook 1, CPU path, full mode, data {root}; {_load()}")
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as workdir:
            NotebookClient(nb, timeout=3600, kernel_name="python3", resources={"metadata": {"path": workdir}}).execute()
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    total = time.perf_counter() - start
    cpu = iter(json.loads(nb.cells[-1].outputs[0]["text"]))  # the code cells between the two injected ones
    part, parts = "Part 0", {}
    print(f"  {'part':<7} {'cell':<19} {'wall s':>7} {'CPU s':>7}")
    for cell in nb.cells[1:-1]:
        if cell.cell_type == "markdown":
            heading = re.match(r"## (Part \d+)", cell.source)
            part = heading.group(1) if heading else part
            continue
        seconds, cpu_seconds = _seconds(cell), next(cpu)
        wall, used = parts.get(part, (0.0, 0.0))
        parts[part] = (wall + seconds, used + cpu_seconds)
        if seconds >= 5:
            first = cell.source.strip().splitlines()[0][:50]
            print(f"  {part:<7} cell {cell.get('id', '?'):<14} {seconds:>7.1f} {cpu_seconds:>7.1f}  {first}")
    for name, (seconds, cpu_seconds) in parts.items():
        print(f"{name:<7} {seconds:>7.1f} s wall, {cpu_seconds:>7.1f} s CPU")
    comparison = next(c for c in nb.cells if c.get("id") == PART4_CELL)
    runs = "".join(o.get("text", "") for o in comparison.outputs if o.get("output_type") == "stream")
    print("Part 4's runs, as the notebook printed them (validation accuracy per model and seed):")
    print("\n".join(f"  {line}" for line in runs.splitlines() if ", seed " in line))
    used = sum(c for _, c in parts.values())
    print(
        f"whole notebook (kernel start included): {total:.0f} s = {total / 60:.1f} min wall; the cells used "
        f"{used:.0f} s of CPU time ({used / 120:.1f} min of two cores); {_load()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(DEFAULT_ROOT), help="CIFAR-10 in the official layout, full size")
    parser.add_argument("--step-times", action="store_true", help="only the time of one step of each network")
    parser.add_argument("--repeats", type=int, default=7, help="steps timed (the median is printed)")
    parser.add_argument("--warmup", type=int, default=5, help="steps run first and not timed")
    args = parser.parse_args()
    if args.step_times:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        step_times(args.root, args.repeats, args.warmup)
    else:
        cpu_path(args.root)


if __name__ == "__main__":
    main()
