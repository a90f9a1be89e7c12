"""Local users and groups for a hub on one machine (the demonstration hub and the hub test): created with
private homes (mode 0700, so no student reads a classmate's work), removed with their homes and processes.

Needs root and the shadow utilities (``useradd``, ``userdel``, ``groupadd``, ``groupdel``).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

TOOLS = ("useradd", "userdel", "groupadd", "groupdel")


def missing_tools() -> str | None:
    """Why local users cannot be made here, or None."""
    if os.geteuid() != 0:
        return "creating local users needs root"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    return f"missing {', '.join(missing)} (Debian: apt-get install passwd)" if missing else None


def _run(*command: str) -> None:
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}): {proc.stderr.strip()}")


def create_group(name: str) -> None:
    try:
        grp.getgrnam(name)
    except KeyError:
        _run("groupadd", name)


def create_user(name: str, groups: list[str], homes: Path | None = None) -> Path:
    """A local user in ``groups`` with a private home (under ``homes`` when given); the home."""
    command = ["useradd", "--create-home", "--shell", "/bin/bash", "--groups", ",".join(groups)]
    if homes is not None:
        command += ["--base-dir", str(homes)]
    _run(*command, name)
    home = Path(pwd.getpwnam(name).pw_dir)
    home.chmod(0o700)  # useradd's HOME_MODE is 0755 on many systems
    return home


def user_processes(name: str) -> list[int]:
    """The ids of the processes that run as user ``name``."""
    uid = pwd.getpwnam(name).pw_uid
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
            except FileNotFoundError:
                continue
    return pids


def stop_processes(pids: list[int], grace_s: float = 10) -> None:
    """SIGTERM each process of ``pids``, then SIGKILL those still there after ``grace_s``."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if Path(f"/proc/{pid}").exists()]
        time.sleep(0.1)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def remove_user(name: str) -> None:
    """Stop the user's processes (by their ids), then remove the user with its home."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        return
    stop_processes(user_processes(name))
    _run("userdel", "--remove", name)


def remove_group(name: str) -> None:
    try:
        grp.getgrnam(name)
    except KeyError:
        return
    _run("groupdel", name)
