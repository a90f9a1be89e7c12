"""Notebooks built from the solutions for the grader tests: edits of a solution, and valid notebooks in unusual
styles (black-formatted lines, IPython syntax, methods attached after the class) that must score full marks."""

from __future__ import annotations

import nbformat

from autograde.example_notebooks import Edit, Example, answer_sources, build

A1, A2, A4 = "01_self_attention_cnn", "02_multi_head_attention", "04_vision_transformer"
FORWARD_START = "        N, C, H, W = x.shape\n"
RETURN = "        return x + out"


# ---------------------------------------------------------------------------------------- builders
def solution(*edits: Edit, assignment: str = A1) -> nbformat.NotebookNode:
    return build(assignment, Example("case", "", edits=tuple(edits)))


def blank(assignment: str) -> nbformat.NotebookNode:
    return build(assignment, Example("blank", "", blank=True))


def indented(code: str, spaces: int = 8) -> str:
    return "".join(f"{' ' * spaces}{line}\n" for line in code.splitlines())


def in_forward(code: str) -> Edit:
    """Insert ``code`` at the start of Attention.forward."""
    return Edit("attention", FORWARD_START, FORWARD_START + indented(code))


def in_init(code: str) -> Edit:
    old = "        super().__init__()\n        # TODO: define self.conv_query"
    return Edit(
        "attention", old, "        super().__init__()\n" + indented(code) + "        # TODO: define self.conv_query"
    )


def returning(expression: str) -> Edit:
    return Edit("attention", RETURN, f"        return {expression}")


def before_class(cell: str, name: str, code: str) -> Edit:
    return Edit(cell, f"class {name}(nn.Module):", f"{code}\n\n\nclass {name}(nn.Module):")


def answer_depends_on(attack: str) -> Edit:
    """answer_q1 is right only if ``attack`` (code that sets ESCAPED) failed: the score proves it did."""
    return Edit("q1", "answer_q1 = 2", f"{attack}\n\nanswer_q1 = 2 if not ESCAPED else 3")


def cell_index(nb: nbformat.NotebookNode, grade_id: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def deleted(grade_id: str) -> nbformat.NotebookNode:
    nb = solution()
    del nb.cells[cell_index(nb, grade_id)]
    return nb


def duplicated_attention() -> nbformat.NotebookNode:
    """An earlier, broken copy of the answer cell; the later (correct) one is what the notebook defines."""
    nb = solution()
    broken = solution(in_forward("raise RuntimeError('first draft')"))
    draft = broken.cells[cell_index(broken, "attention")]
    draft.id = "attention-draft"
    nb.cells.insert(cell_index(nb, "attention"), draft)
    return nb


def renamed_grade_id() -> nbformat.NotebookNode:
    nb = solution()
    nb.cells[cell_index(nb, "attention")].metadata["nbgrader"]["grade_id"] = "my_attention"
    return nb


def with_cell_after(grade_id: str, source: str, nb: nbformat.NotebookNode | None = None, before: bool = False):
    """``nb`` (default: the solution) with a new code cell after (or before) the cell ``grade_id``."""
    nb = nb or solution()
    nb.cells.insert(cell_index(nb, grade_id) + (0 if before else 1), nbformat.v4.new_code_cell(source))
    return nb


def statement_chain() -> nbformat.NotebookNode:
    """A ~1 MB notebook: a 30,000-statement assignment chain after the correct answers."""
    chain = "x0 = 0\n" + "".join(f"x{i} = x{i - 1} + 1\n" for i in range(1, 30_000))
    return with_cell_after("attention", chain)


# ---------------------------------------------------------------------------------- valid styles
def black_style_mha() -> nbformat.NotebookNode:
    old = "        if embed_dim % num_heads != 0:\n"
    new = "        if (\n            embed_dim\n            % num_heads\n            != 0\n        ):\n"
    return solution(Edit("mha", old, new), assignment=A2)


def ipython_syntax() -> nbformat.NotebookNode:
    nb = with_cell_after("attention", "nn.Conv2d?\ngpus = !nvidia-smi -L\n%time probe = Attention(4)")
    nb = with_cell_after(
        "attention",
        "%%writefile attention_helpers.py\nimport torch\n\n\ndef weighted(weights, v):\n    return weights @ v\n",
        nb,
        before=True,
    )
    sources = answer_sources(A1)
    attention = sources["attention"].replace(
        "out = (weights @ v).transpose(1, 2)", "out = attention_helpers.weighted(weights, v).transpose(1, 2)"
    )
    nb.cells[cell_index(nb, "attention")].source = "import attention_helpers\n\n\n" + attention
    return nb


def attached_and_configured() -> nbformat.NotebookNode:
    sources = answer_sources(A1)
    attention = sources["attention"]
    head, _, forward = attention.partition("    def forward(self, x: torch.Tensor) -> torch.Tensor:\n")
    body = "\n".join(line[4:] for line in forward.splitlines())
    code = (
        "SETTINGS = {'scale': None}\nSETTINGS.update(scale='sqrt')\n\n\n"
        + head.rstrip()
        + "\n\n\ndef attention_forward(self, x):\n"
        + indented(body.replace("math.sqrt(C)", "(math.sqrt(C) if SETTINGS['scale'] == 'sqrt' else 1.0)"), 0)
        + "\n\nAttention.forward = attention_forward\n"
    )
    nb = solution()
    nb.cells[cell_index(nb, "attention")].source = code
    return nb
