"""Similar submissions at scale: seconds to compare 100, 300 and 1,000 generated submissions, and the growth rate.

Each generated class is a folder of notebooks (one per student) with four answer cells in a release's stubs. A
student's code is written from a grammar of the course's kind of code (tensor expressions, reshapes, layers,
loops) with names, constants and statement choices drawn at random, plus idioms many students share (which the
check must treat as common code); 5% of the students hand in a copy of another's, renamed, reordered and with new
comments. The timing covers what ``python -m autograde report`` does for one assignment: read every notebook,
normalise and fingerprint its answer cells (in parallel), index, and locate the shared code of flagged pairs.
The growth rate is the slope of log(seconds) against log(submissions): 1 is linear, 2 is every pair.

python -m bench.similarity [--sizes 100 300 1000] [--jobs 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import tempfile
import time
from pathlib import Path

from autograde.report.normalise import Cell
from autograde.report.similarity import Code, Settings, find_similar

CELLS = ("attention", "heads", "encoding", "model")
STUB = "    # YOUR CODE HERE\n    raise NotImplementedError()\n"
OPS = (
    "transpose(-2, -1)",
    "softmax(dim=-1)",
    "reshape(N, -1, D)",
    "permute(0, 2, 1, 3)",
    "flatten(2)",
    "mean(dim=1)",
    "unsqueeze(1)",
    "contiguous()",
    "clamp_min(1e-6)",
    "masked_fill(mask, 0.0)",
    "sum(dim=-1, keepdim=True)",
)
FUNCS = ("torch.matmul", "torch.einsum", "F.relu", "F.gelu", "torch.cat", "torch.stack", "F.layer_norm", "torch.exp")
IDIOMS = (
    "    N, S, E = x.shape\n",
    "    scale = 1.0 / math.sqrt(D)\n",
    "    out = out.transpose(1, 2).reshape(N, S, E)\n",
    "    if mask is not None:\n        scores = scores.masked_fill(~mask.bool(), float('-inf'))\n",
    "    weights = F.softmax(scores, dim=-1)\n",
)
WORDS = ("q", "k", "v", "x", "h", "w", "out", "scores", "attn", "tmp", "z", "y", "feat", "acc", "logits", "probs")


def _expression(rng: random.Random, names: list[str]) -> str:
    a, b = rng.choice(names), rng.choice(names)
    form = rng.randrange(5)
    if form == 0:
        return f"{a}.{rng.choice(OPS)}"
    if form == 1:
        return f"{a} @ {b}.{rng.choice(OPS)}"
    if form == 2:
        return f"({a} {rng.choice('+-*/')} {b}) * {rng.randint(1, 9)}"
    if form == 3:
        return f"{a}.{rng.choice(OPS)}.{rng.choice(OPS)}"
    return f"{rng.choice(FUNCS)}({a}.{rng.choice(OPS)}, {b})"


def _function(rng: random.Random, cell: str, index: int) -> str:
    names = list(rng.sample(WORDS, 5))
    lines = [f"def {cell}_{index}({names[0]}, {names[1]}, mask=None):\n"]
    if rng.random() < 0.7:
        lines.append(rng.choice(IDIOMS))
    for _ in range(rng.randint(6, 12)):
        target = rng.choice(names)
        if rng.random() < 0.15:
            lines.append(f"    for i in range({rng.randint(2, 8)}):\n        {target} = {_expression(rng, names)}\n")
        else:
            lines.append(f"    {target} = {_expression(rng, names)}\n")
    lines.append(f"    return {rng.choice(names)}\n")
    return "".join(lines)


def _answers(rng: random.Random) -> dict[str, str]:
    return {cell: "\n\n".join(_function(rng, cell, i) for i in range(rng.randint(2, 3))) for cell in CELLS}


def _disguised(answers: dict[str, str], rng: random.Random) -> dict[str, str]:
    """A copy: every name of WORDS renamed, a comment added to each cell."""
    renames = dict(zip(WORDS, rng.sample([f"my_{w}" for w in WORDS], len(WORDS)), strict=True))
    out = {}
    for cell, source in answers.items():
        for old, new in renames.items():
            source = re.sub(rf"\b{old}\b", new, source)
        out[cell] = f"# my solution for {cell}\n{source}"
    return out


def _notebook(answers: dict[str, str]) -> dict:
    cells = [
        {
            "cell_type": "code",
            "metadata": {},
            "source": "import math\nimport torch\nimport torch.nn.functional as F",
            "outputs": [],
            "execution_count": None,
        }
    ]
    for cell, source in answers.items():
        cells.append(
            {
                "cell_type": "code",
                "metadata": {"nbgrader": {"solution": True, "grade_id": cell}},
                "source": source,
                "outputs": [],
                "execution_count": None,
            }
        )
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def release() -> list[Cell]:
    return [Cell(cell, f'def {cell}_0(q, k, mask=None):\n    """Do it."""\n{STUB}') for cell in CELLS]


def make_class(folder: Path, size: int, seed: int) -> tuple[list[Code], set[frozenset[str]]]:
    rng = random.Random(seed)
    codes, planted, answers = [], set(), {}
    for i in range(size):
        student = f"student{i:04d}"
        if i >= 10 and rng.random() < 0.05:
            original = f"student{rng.randrange(i):04d}"
            answers[student] = _disguised(answers[original], rng)
            planted.add(frozenset((student, original)))
        else:
            answers[student] = _answers(rng)
        path = folder / f"{student}.ipynb"
        path.write_text(json.dumps(_notebook(answers[student])))
        codes.append(Code(student, path=path))
    return codes, planted


def _groups(planted: set[frozenset[str]]) -> dict[str, str]:
    """student -> the original their copy chain starts from (copies of a copy share their original's code)."""
    parent: dict[str, str] = {}

    def root(s: str) -> str:
        while parent.get(s, s) != s:
            s = parent[s]
        return s

    for a, b in (sorted(pair) for pair in planted):
        parent[root(b)] = root(a)
    return {s: root(s) for pair in planted for s in pair}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--jobs", type=int, default=0, help="processes (default: up to 2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    settings = Settings(jobs=args.jobs)
    print(f"load average before: {os.getloadavg()[0]:.2f}; processes: {settings.processes()}; cores: {os.cpu_count()}")
    times = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="similarity-bench-") as tmp:
            codes, planted = make_class(Path(tmp), size, args.seed)
            start = time.perf_counter()
            result = find_similar("generated", codes, release(), settings)
            seconds = time.perf_counter() - start
        flagged = {frozenset((p.a, p.b)) for p in result.pairs}
        group = _groups(planted)
        independent = {pair for pair in flagged if len({group.get(s, s) for s in pair}) == 2}
        times.append(seconds)
        print(
            f"{size:5d} submissions: {seconds:6.2f} s ({1000 * seconds / size:.1f} ms each); "
            f"planted copies flagged {len(planted & flagged)}/{len(planted)}; pairs of independent students "
            f"flagged {len(independent)} (copies of a copy: {len(flagged - planted - independent)}); "
            f"load average {os.getloadavg()[0]:.2f}"
        )
    for i in range(1, len(times)):
        (n0, t0), (n1, t1) = (args.sizes[i - 1], times[i - 1]), (args.sizes[i], times[i])
        slope = math.log(t1 / t0) / math.log(n1 / n0)
        print(f"growth {n0} -> {n1}: x{t1 / t0:.2f} for x{n1 / n0:.2f} submissions, slope {slope:.2f}")
    if len(times) > 1:
        slope = math.log(times[-1] / times[0]) / math.log(args.sizes[-1] / args.sizes[0])
        print(f"growth rate over {args.sizes[0]} -> {args.sizes[-1]}: slope {slope:.2f} (1: linear, 2: every pair)")


if __name__ == "__main__":
    main()
