"""``make demo``: the course in about five minutes, on a CPU, offline.

1. Trains the seeds' vanilla CNN briefly on the offline data set; writes its training curves and an image grid.
2. Releases every notebook with nbgrader and autogrades two example submissions of each (the solution and a
   realistic mistake) through the real nbgrader pipeline: score table, feedback and grades CSV.
3. Grades every example submission of every notebook with the isolated grader (``python -m autograde grade``),
   as an instructor grades a class.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from torch import optim  # noqa: E402

from autograde import example_notebooks as ex  # noqa: E402
from autograde import nbgrader_course as course_cli  # noqa: E402
from autograde.course import ASSIGNMENTS  # noqa: E402
from autograde.course import ids as course_ids  # noqa: E402
from course_utils import (  # noqa: E402
    check_accuracy,
    get_device,
    get_loaders,
    plot_history,
    set_seed,
    show_images,
    train,
)


def train_vanilla_cnn(out: Path, epochs: int, iterations: int) -> None:
    set_seed(0)
    device = get_device()
    loaders = get_loaders(batch_size=64, dataset="synthetic", device=device)
    images, labels = next(iter(loaders.test))
    show_images(images[:32], labels[:32], loaders.classes).savefig(out / "images.png", dpi=120)
    model = ASSIGNMENTS[0].reference().vanilla_cnn()  # notebook 1's baseline
    history = train(
        model,
        optim.Adam(model.parameters(), lr=1e-3),
        loaders.train,
        loaders.val,
        epochs=epochs,
        print_every=50,
        max_iters_per_epoch=iterations,
    )
    val, test = check_accuracy(loaders.val, model), check_accuracy(loaders.test, model)
    plot_history(history).savefig(out / "training_curves.png", dpi=120)
    print(f"\nvanilla CNN on the offline data set: validation {val:.1f}%, test {test:.1f}% (chance 10%)")
    print(f"wrote {out / 'training_curves.png'} and {out / 'images.png'}\n")


def nbgrader_examples(assignment: str) -> list[ex.Example]:
    """The solution and the first realistic mistake (the examples list the solution, the blank, then mistakes)."""
    every = ex.examples(assignment)
    return [every[0], every[2]]


def autograde_with_nbgrader(out: Path) -> None:
    course = course_cli.make_course(out / "course")
    table = []
    for assignment in course_ids():
        print(f"nbgrader: releasing {assignment} and autograding two example submissions ...", flush=True)
        course_cli.generate_release(course, [assignment])
        chosen = nbgrader_examples(assignment)
        for example in chosen:
            course_cli.submit(course, assignment, example.name, ex.example_path(assignment, example.name))
        course_cli.autograde(course, assignment)
        scores = course_cli.cell_scores(course, assignment)
        for example in chosen:
            mine = [s for s in scores if s.student == example.name]
            earned = sum(s.auto_score or 0 for s in mine)
            possible = sum(s.max_score for s in mine)
            table.append((assignment, example.name, earned, possible, example.description))
        course_cli.generate_feedback(course, assignment)
    grades = course_cli.export_grades(course)
    width = max(len(row[1]) for row in table)
    print(f"\n{'assignment':<24} {'submission':<{width}}  auto score  what it is")
    for assignment, name, earned, possible, description in table:
        print(f"{assignment:<24} {name:<{width}}  {earned:>4g} / {possible:<4g} {description}")
    print(f"\nnbgrader grades CSV: {grades}\nnbgrader feedback:   {course / 'course' / 'feedback'}\n")


def grade_class_in_isolation(out: Path) -> None:
    """Every example submission as one class folder (student id = file name), graded by ``python -m autograde``."""
    folder = out / "class"
    folder.mkdir()
    for assignment in course_ids():
        for example in ex.examples(assignment):
            shutil.copy(ex.example_path(assignment, example.name), folder / f"{assignment}-{example.name}.ipynb")
    print(f"isolated grader: {len(list(folder.iterdir()))} submissions in {folder}", flush=True)
    subprocess.run([sys.executable, "-m", "autograde", "grade", str(folder), "--out", str(out / "grading")], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="where to write (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=150, help="iterations per epoch (default: %(default)s)")
    parser.add_argument("--skip-grading", action="store_true", help="only train the CNN")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    train_vanilla_cnn(args.out, args.epochs, args.iterations)
    if not args.skip_grading:
        autograde_with_nbgrader(args.out)
        grade_class_in_isolation(args.out)


if __name__ == "__main__":
    main()
