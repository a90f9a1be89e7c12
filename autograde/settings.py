"""The grader's settings, in one place: defaults, help text, environment variables and command-line options.

Every grading path reads them from here: ``python -m autograde grade`` (its options and their help are made
from :data:`FIELDS`), ``make grade TIMEOUT=... MEMORY=...``, the Gradescope package (its ``run_autograder``
passes the values chosen when the package was built), and the hidden cells of ``nbgrader autograde`` (which
read the ``AUTOGRADE_*`` environment variables). Standard library only.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields, replace


def _setting(default, help: str, unit: str = ""):
    return field(default=default, metadata={"help": help, "unit": unit})


@dataclass(frozen=True)
class Settings:
    timeout: float = _setting(30.0, "seconds per call into student code (building or running one module)", "s")
    memory_mb: int = _setting(2048, "memory per worker on top of what torch itself holds", "MiB")
    submission_seconds: float = _setting(
        300.0, "time budget of one submission's calls into student code, all calls together", "s"
    )
    jobs: int = _setting(2, "submissions graded in parallel (lanes)")
    file_mb: int = _setting(16, "largest file a worker may write in its scratch folder", "MiB")
    scratch_mb: int = _setting(64, "all the files a worker may keep in its scratch folder together", "MiB")
    open_files: int = _setting(256, "files a worker may hold open at once")
    notebook_mb: int = _setting(64, "largest notebook file read (outputs included)", "MiB")
    code_kb: int = _setting(1024, "most code read from one notebook (all code cells together)", "KiB")
    read_seconds: float = _setting(20.0, "time to read one notebook and find its graded definitions", "s")

    @property
    def grace(self) -> float:
        """How long past ``timeout`` the trusted side waits before it kills a worker."""
        return max(2.0, 0.25 * self.timeout)

    def budget(self, extra_seconds: float = 0.0) -> float:
        """The time budget of one submission's calls into student code: ``submission_seconds`` plus the
        allowance of what the submission's parts need on top (a checkpoint to evaluate)."""
        return self.submission_seconds + extra_seconds

    def wall_cap(self, extra_seconds: float = 0.0) -> float:
        """The trusted side's wall-clock cap on grading one submission: its budget with a margin for the
        grader's own work."""
        return 1.5 * self.budget(extra_seconds) + 120.0

    def worker_limits(self, extra_seconds: float = 0.0) -> dict:
        """The resource limits of one sandboxed worker (CPU time covers the whole budget)."""
        return {
            "memory_mb": self.memory_mb,
            "cpu_seconds": int(self.budget(extra_seconds) + 60),
            "file_bytes": self.file_mb * 2**20,
            "scratch_bytes": self.scratch_mb * 2**20,
            "open_files": self.open_files,
        }

    def as_arguments(self) -> list[str]:
        """These settings as command-line options (``--timeout 30 ...``), e.g. for run_autograder."""
        args = []
        for f in fields(self):
            args += [_option(f.name), str(getattr(self, f.name))]
        return args


FIELDS = fields(Settings)
DEFAULTS = Settings()


def env_name(name: str) -> str:
    return f"AUTOGRADE_{name.upper()}"


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def from_env(environ: dict | None = None) -> Settings:
    """The defaults, overridden by ``AUTOGRADE_<NAME>`` environment variables (used by the nbgrader path)."""
    environ = os.environ if environ is None else environ
    values = {}
    for f in FIELDS:
        raw = environ.get(env_name(f.name), "").strip()
        if raw:
            try:
                values[f.name] = type(f.default)(float(raw)) if isinstance(f.default, int) else float(raw)
            except ValueError:
                raise ValueError(f"{env_name(f.name)}={raw!r} is not a number") from None
    return replace(DEFAULTS, **values)


def add_arguments(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    """Add one option per setting (default and help from :class:`Settings`)."""
    for f in FIELDS:
        if only is not None and f.name not in only:
            continue
        unit = f" ({f.metadata['unit']})" if f.metadata["unit"] else ""
        parser.add_argument(
            _option(f.name),
            type=type(f.default),
            default=f.default,
            help=f"{f.metadata['help']}{unit}; default {f.default:g}",
        )


def from_arguments(args: argparse.Namespace) -> Settings:
    values = {f.name: getattr(args, f.name) for f in FIELDS if hasattr(args, f.name)}
    return replace(DEFAULTS, **values)
