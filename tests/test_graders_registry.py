"""Over every assignment of the registry (``autograde.course.ASSIGNMENTS``), in-process: the reference solution
(``reference.SOLUTION``) earns every point of every part, and the grader's stand-ins for earlier parts run and
stand in for what they replace.

Parts whose tests need what a grading run prepares (``@pytest.mark.needs``, such as the evaluation images of a
trained checkpoint) are graded from a real checkpoint in ``tests/test_checkpoint_grading.py``, not here. The points
come from the graders' markers, read through the catalog.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

from autograde import course
from autograde.catalog import catalog
from autograde.checks import StandIns, module_source
from tests.grader_reports import assert_full_marks, grade_part


def _parts_without_resources() -> list[tuple[str, str]]:
    cases = []
    for assignment in course.ASSIGNMENTS:
        tests = catalog(assignment.id).tests
        for part in catalog(assignment.id).parts:
            if not any(t.needs for t in tests if t.part == part):
                cases.append((assignment.id, part))
    return cases


@pytest.mark.parametrize(("assignment", "part"), _parts_without_resources())
def test_the_reference_earns_every_point(assignment, part):
    reference = course.get(assignment).reference()
    solution = getattr(reference, "SOLUTION", None)
    assert isinstance(solution, dict), f"{reference.__name__} must export SOLUTION: name -> what the notebook defines"
    assert_full_marks(grade_part(assignment, dict(solution), part), catalog(assignment).parts[part])


def test_every_part_of_the_registry_is_graded_here_or_from_a_checkpoint():
    """The parts left out above are exactly the checkpoint's, which tests/test_checkpoint_grading.py grades."""
    graded = set(_parts_without_resources())
    every = {(a.id, part) for a in course.ASSIGNMENTS for part in catalog(a.id).parts}
    assert every - graded == {("04_vision_transformer", "checkpoint")}


def _stand_ins(assignment: course.Assignment) -> list[StandIns]:
    grader = importlib.import_module(f"{assignment.package}.grader")
    return [value for value in vars(grader).values() if isinstance(value, StandIns)]


@pytest.mark.parametrize("assignment", course.ASSIGNMENTS, ids=course.ids())
def test_the_stand_in_modules_run_and_take_the_place_of_what_they_replace(assignment):
    """Each stand-in module of the notebook's folder runs as the worker runs it (its text, executed), defines every
    name a grader ships it for, and each stand-in takes the arguments of the reference object it replaces."""
    declared = _stand_ins(assignment)
    modules = {s.module for s in declared}
    assert {m for m in modules if not m.startswith(assignment.package + ".")} == set(), modules
    in_folder = {f"{assignment.package}.{p.stem}" for p in assignment.directory.glob("stand_ins*.py")}
    assert in_folder == modules, f"stand-in modules no grader uses, or used but missing: {in_folder ^ modules}"
    for stand_ins in declared:
        assert set(stand_ins.sources.values()) == {module_source(stand_ins.module)}
        for name, stand_in in stand_ins.objects.items():
            original = getattr(stand_ins.reference, name)
            assert type(stand_in) is type(original), f"{name}: the stand-in is a {type(stand_in).__name__}"
            want = list(inspect.signature(original).parameters)
            assert list(inspect.signature(stand_in).parameters) == want, f"{name} must take {want}"
