"""The hub's configuration, checked as far as it can be where no hub, Docker or Kubernetes runs.

- hub/settings.toml is the one place: the Zero to JupyterHub values (hub/z2jh/config.yaml) are what
  ``python -m hub.z2jh`` writes from it, they hold the keys the course needs, and their Python hook gives
  instructors the instructor image and the course volume and every user a uid of their own;
- the roles' Jupyter configuration: students lose nbgrader's instructor extensions, nobody loses the Assignments list;
- the single-user image's course steps (hub/image.py, as hub/Dockerfile runs them) in scratch environments: the
  requirements are those installed here, the student image gets course_utils and no autograde, the instructor
  image gets the wheel; each with its role's configuration.
The one-machine hub itself runs in tests/browser/test_hub.py.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from traitlets.config import Config

from autograde.course import REPO
from hub import roles, z2jh
from hub.settings import load

DOCKERFILE = REPO / "hub" / "Dockerfile"
# where an environment imports course_utils and autograde from (None: it cannot)
PROBE = (
    "import importlib.util, json; print(json.dumps("
    "{n: getattr(importlib.util.find_spec(n), 'origin', None) for n in ('course_utils', 'autograde')}))"
)


def test_the_kubernetes_values_are_written_from_the_settings():
    assert z2jh.CONFIG_YAML.read_text() == z2jh.render(), "hub/z2jh/config.yaml is stale: run python -m hub.z2jh"


def test_the_kubernetes_values_hold_what_the_course_needs():
    settings, values = load(), yaml.safe_load(z2jh.CONFIG_YAML.read_text())
    user = values["singleuser"]
    assert user["image"] == {"name": settings.kubernetes["image"], "tag": settings.kubernetes["tag"]}
    assert user["memory"]["limit"] == settings.memory_limit and user["cpu"]["limit"] == settings.cpu_limit
    mounts = {m["mountPath"]: m["name"] for m in user["storage"]["extraVolumeMounts"]}
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in user["storage"]["extraVolumes"]}
    assert claims[mounts[settings.exchange_root]] == settings.kubernetes["exchange_claim"]
    gpu = [
        p
        for p in user["profileList"]
        if "nvidia.com/gpu" in p.get("kubespawner_override", {}).get("extra_resource_limits", {})
    ]
    assert len(gpu) == 1 and [p for p in user["profileList"] if p.get("default")] != gpu
    groups = values["hub"]["config"]["JupyterHub"]["load_groups"]
    assert set(groups) == {settings.instructors_group, settings.students_group}


def _spawner(user_id: int, groups: list[str]) -> SimpleNamespace:
    user = SimpleNamespace(id=user_id, groups=[SimpleNamespace(name=g) for g in groups])
    return SimpleNamespace(
        user=user, image="student-image", volumes=[], volume_mounts=[], environment={}, notebook_dir=None
    )


def test_the_kubernetes_hook_gives_instructors_their_image_and_the_course():
    settings = load()
    c = Config()
    exec(
        compile(yaml.safe_load(z2jh.CONFIG_YAML.read_text())["hub"]["extraConfig"]["course.py"], "course.py", "exec"),
        {"c": c},
    )
    hook, uid = c.KubeSpawner.pre_spawn_hook, c.KubeSpawner.uid
    student, instructor = _spawner(7, [settings.students_group]), _spawner(8, [settings.instructors_group])
    hook(student)
    hook(instructor)
    assert student.image == "student-image" and not student.volumes and not student.environment
    k8s = settings.kubernetes
    assert instructor.image == f"{k8s['instructor_image']}:{k8s['tag']}"
    assert instructor.volumes == [{"name": "course", "persistentVolumeClaim": {"claimName": k8s["course_claim"]}}]
    assert instructor.notebook_dir == k8s["course_mount"]
    assert instructor.environment["JUPYTER_CONFIG_PATH"].split(":")[-1] == k8s["course_mount"]
    assert uid(student) != uid(instructor) and uid(student) == k8s["uid_offset"] + 7


def test_students_lose_the_instructor_extensions_only():
    settings = load()
    student, instructor = roles.role_files("student", settings), roles.role_files("instructor", settings)
    disabled = student["labconfig/page_config.json"]["disabledExtensions"]
    assert set(disabled) == {
        "@jupyter/nbgrader:create-assignment",
        "@jupyter/nbgrader:formgrader",
        "@jupyter/nbgrader:course-list",
    }
    assert "@jupyter/nbgrader:assignment-list" not in disabled
    assert "labconfig/page_config.json" not in instructor
    for files in (student, instructor):
        assert files["nbgrader_config.json"]["Exchange"]["root"] == settings.exchange_root
        assert files["nbgrader_config.json"]["CourseDirectory"]["course_id"] == settings.course_id


# ---- the image's course steps, in scratch environments ----


def dockerfile_steps() -> dict[str, str]:
    """hub/image.py's steps as the Dockerfile runs them: {step: the command's arguments after the script}."""
    steps = {}
    for match in re.finditer(r"python /tmp/src/hub/image\.py (\w+) (/tmp/src)", DOCKERFILE.read_text()):
        steps[match.group(1)] = match.group(2)
    return steps


def scratch_python(folder: Path) -> Path:
    """A fresh environment that sees this one's packages as a plain path (not this project's editable install)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "course-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def run_step(python: Path, step: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "PIP_NO_INDEX": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "HOME": str(cwd),
    }
    proc = subprocess.run(
        [str(python), str(REPO / "hub" / "image.py"), step, str(REPO)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"image.py {step}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_the_dockerfile_runs_the_image_steps():
    assert set(dockerfile_steps()) == {"requirements", "student", "instructor"}
    text = DOCKERFILE.read_text()
    for role in ("student", "instructor"):
        assert f"ENV JUPYTER_CONFIG_PATH=/usr/local/etc/jupyter/{role}" in text
    assert "COPY . " not in text and "ADD . " not in text, "the repository must not end up in a layer"


@pytest.mark.slow
def test_the_image_requirements_are_what_the_course_runs_on(tmp_path):
    python = scratch_python(tmp_path / "env")
    requirements = shlex.split(run_step(python, "requirements", tmp_path).stdout)
    assert any(r.startswith("jupyterhub") for r in requirements) and any(r.startswith("nbgrader") for r in requirements)
    proc = subprocess.run(  # every requirement is met by what the tests run on (no download)
        [str(python), "-m", "pip", "install", "--dry-run", "--no-index", "--no-deps", *requirements],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert proc.returncode == 0 and "Would install" not in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("role", ["student", "instructor"])
def test_the_image_steps_install_each_role(role, tmp_path):
    python = scratch_python(tmp_path / "env")
    run_step(python, role, tmp_path)
    probe = subprocess.run(
        [str(python), "-c", PROBE],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    found = json.loads(probe.stdout)
    course_utils, autograde = found["course_utils"], found["autograde"]
    site = str(tmp_path / "env")
    assert course_utils and course_utils.startswith(site), course_utils
    if role == "student":
        assert autograde is None, f"the student image can import autograde: {autograde}"
    else:
        assert autograde and autograde.startswith(site), autograde
    config = tmp_path / "env" / "etc" / "jupyter" / role
    assert (
        json.loads((config / "nbgrader_config.json").read_text())
        == roles.role_files(role, load())["nbgrader_config.json"]
    )
