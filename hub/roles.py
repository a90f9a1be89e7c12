"""The Jupyter configuration of each role on the hub, written as JSON files into a folder that the role's servers
read through ``JUPYTER_CONFIG_PATH`` (one machine: ``jupyterhub_config.py``; the image: ``hub/Dockerfile``).

Both roles get nbgrader's course id and exchange (``nbgrader_config.json``). Instructors' servers may show their
own pages in frames (the formgrader is one, inside JupyterLab). Students also get
``labconfig/page_config.json``, which disables nbgrader's instructor plugins in JupyterLab (the *Create Assignment*
sidebar, the *Formgrader* and *Courses* entries), and ``jupyter_server_config.json``, which switches off the
formgrader's and course list's server extensions. A folder on ``JUPYTER_CONFIG_PATH`` takes precedence over the
environment's own ``etc/jupyter`` (where installing nbgrader enabled everything).

    python -m hub.roles student /usr/local/etc/jupyter/student    # what the Dockerfile runs
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hub.settings import HubSettings, load

ROLES = ("student", "instructor")


def role_files(role: str, settings: HubSettings) -> dict[str, dict]:
    """The configuration files of ``role``: ``{path relative to the config folder: JSON content}``."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    files = {
        "nbgrader_config.json": {
            "CourseDirectory": {"course_id": settings.course_id},
            "Exchange": {"root": settings.exchange_root, "path_includes_course": settings.path_includes_course},
        }
    }
    if role == "instructor":
        # nbgrader's formgrader is a page of the server inside JupyterLab's iframe; the hub's servers forbid every
        # iframe by default (Content-Security-Policy: frame-ancestors 'none'), which leaves it blank
        files["jupyter_server_config.json"] = {
            "ServerApp": {"tornado_settings": {"headers": {"Content-Security-Policy": "frame-ancestors 'self'"}}}
        }
    if role == "student":
        files["labconfig/page_config.json"] = {
            "disabledExtensions": {plugin: True for plugin in settings.instructor_only_lab}
        }
        files["jupyter_server_config.json"] = {
            "ServerApp": {"jpserver_extensions": {extension: False for extension in settings.instructor_only_server}}
        }
    return files


def write_role_config(folder: Path, role: str, settings: HubSettings) -> Path:
    """Write ``role``'s configuration files into ``folder`` (readable by every user); the folder."""
    for name, content in role_files(role, settings).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, indent=2) + "\n")
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a role's Jupyter configuration (hub/settings.toml).")
    parser.add_argument("role", choices=ROLES)
    parser.add_argument("folder", type=Path, help="the folder that JUPYTER_CONFIG_PATH names for this role")
    args = parser.parse_args(argv)
    print(f"wrote the {args.role}s' Jupyter configuration to {write_role_config(args.folder, args.role, load())}")


if __name__ == "__main__":
    main()
