"""The hub's settings, read from ``hub/settings.toml`` (the one place for them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tomllib

SETTINGS_FILE = Path(__file__).resolve().with_name("settings.toml")


@dataclass(frozen=True)
class HubSettings:
    course_id: str
    course_folder: str  # in each instructor's home (one machine)
    exchange_root: str
    path_includes_course: bool
    instructors_group: str
    students_group: str
    instructor_only_lab: tuple[str, ...]
    instructor_only_server: tuple[str, ...]
    memory_limit: str
    memory_guarantee: str
    cpu_limit: float
    cpu_guarantee: float
    gpu: dict
    kubernetes: dict


def load(path: Path = SETTINGS_FILE) -> HubSettings:
    """The settings in ``path`` (``hub/settings.toml`` unless told otherwise)."""
    raw = tomllib.loads(path.read_text())
    return HubSettings(
        course_id=raw["course"]["id"],
        course_folder=raw["course"]["folder"],
        exchange_root=raw["exchange"]["root"],
        path_includes_course=bool(raw["exchange"]["path_includes_course"]),
        instructors_group=raw["groups"]["instructors"],
        students_group=raw["groups"]["students"],
        instructor_only_lab=tuple(raw["extensions"]["instructor_only_lab"]),
        instructor_only_server=tuple(raw["extensions"]["instructor_only_server"]),
        memory_limit=raw["resources"]["memory_limit"],
        memory_guarantee=raw["resources"]["memory_guarantee"],
        cpu_limit=float(raw["resources"]["cpu_limit"]),
        cpu_guarantee=float(raw["resources"]["cpu_guarantee"]),
        gpu=dict(raw["gpu"]),
        kubernetes=dict(raw["kubernetes"]),
    )
