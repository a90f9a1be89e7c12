"""A one-machine hub for the course, set up, started and stopped from Python: ``make hub`` and the hub test.

:class:`Site` is where a machine keeps the hub's parts (read by ``hub/jupyterhub_config.py`` from the JSON file
``$COURSE_HUB_SITE`` names). :class:`LocalHub` makes one: the instructors' and students' groups and users with
private homes, nbgrader's exchange (mode 1777: everyone may create their folders, nobody may remove another's),
the course environment every user runs (``hub.environment``), the instructors' grading packages, a copy of the
course (``nbgrader_config.py`` and ``solutions/``) in each instructor's home that only that instructor can read,
then JupyterHub with configurable-http-proxy on free local ports. :meth:`LocalHub.stop` stops the hub and the
proxy by their process ids, removes the users with their homes, the groups and every file it made.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from hub import accounts, environment
from hub.settings import HubSettings, load

HUB_DIR = Path(__file__).resolve().parent
HUB_CONFIG = HUB_DIR / "jupyterhub_config.py"
DEFAULT_ROOT = Path("/srv/attention-course")
PROXY = "configurable-http-proxy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing_requirements() -> str | None:
    """Why a hub cannot run on this machine, or None."""
    reason = accounts.missing_tools()
    if reason:
        return reason
    if shutil.which("node") is None:
        return "Node.js is not installed (configurable-http-proxy needs it: apt-get install nodejs npm)"
    if shutil.which(PROXY) is None:
        return f"{PROXY} is not installed (npm install -g {PROXY})"
    try:
        import jupyterhub  # noqa: F401
    except ImportError:
        return "JupyterHub is not installed in this environment (pip install -e '.[hub]')"
    return None


@dataclass
class Site:
    """Where a machine keeps the hub's parts, and what it changes of hub/settings.toml."""

    state: str = str(DEFAULT_ROOT / "hub")  # the hub's database, cookie secret, pid files, roles' configuration
    environment: str = str(DEFAULT_ROOT / "env")  # the course environment every user runs
    grader: str = str(DEFAULT_ROOT / "grader")  # autograde (graders, references): the instructors' group only
    ip: str = "127.0.0.1"
    port: int = 8000
    hub_port: int = 8081
    proxy_api_port: int = 8001
    course_data: str = ""  # COURSE_DATA for every server (a CIFAR-10 copy), if any
    overrides: dict = field(default_factory=dict)  # HubSettings fields to change (the test's own groups, exchange)

    @classmethod
    def read(cls, path: str | None) -> Site:
        return cls(**json.loads(Path(path).read_text())) if path else cls()

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")
        return path

    def settings(self) -> HubSettings:
        return dataclasses.replace(load(), **self.overrides)


def user_environment(site: Site, settings: HubSettings, role: str, home: Path) -> dict[str, str]:
    """What a user's server (and the commands an instructor runs) adds to the environment: the role's Jupyter
    configuration, the course environment first on PATH, and for instructors the course folder's configuration
    and the grading packages."""
    config_path = [str(Path(site.state) / "jupyter" / role)]
    if role == "instructor":  # the course's nbgrader_config.py, for the formgrader (whose server runs in the home)
        config_path.append(str(home / settings.course_folder))
    env = {
        "HOME": str(home),
        "JUPYTER_CONFIG_PATH": os.pathsep.join(config_path),
        # nbgrader runs `alembic`, JupyterLab's terminal runs `nbgrader`: the course environment's come first
        "PATH": os.pathsep.join([str(Path(site.environment) / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]),
        "MPLCONFIGDIR": str(home / ".cache" / "matplotlib"),
    }
    if site.course_data:
        env["COURSE_DATA"] = site.course_data
    if role == "instructor":
        env["PYTHONPATH"] = site.grader
    return env


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class Member:
    name: str
    role: str  # "instructor" or "student"
    home: Path


class LocalHub:
    """A hub on this machine with its own users, groups, exchange, environment and course (see the module)."""

    def __init__(
        self,
        instructors: list[str],
        students: list[str],
        *,
        root: Path | None = None,
        groups_prefix: str | None = None,
        course_data: str = "",
        port: int | None = None,
    ):
        self.root = root or Path(tempfile.mkdtemp(prefix="course-hub-"))
        self.root.chmod(0o755)  # users reach the environment, the exchange and their homes under it
        self.password = secrets.token_urlsafe(12)
        base = load()
        groups = (
            {"instructors_group": f"{groups_prefix}-instructors", "students_group": f"{groups_prefix}-students"}
            if groups_prefix
            else {}
        )
        self.site = Site(
            state=str(self.root / "state"),
            environment=str(self.root / "env"),
            grader=str(self.root / "grader"),
            port=port or free_port(),
            hub_port=free_port(),
            proxy_api_port=free_port(),
            course_data=course_data,
            overrides={"exchange_root": str(self.root / "exchange"), **groups},
        )
        self.settings = self.site.settings()
        assert self.settings.course_id == base.course_id
        self.planned = [(n, "instructor") for n in instructors] + [(n, "student") for n in students]
        self.members: dict[str, Member] = {}
        self.process: subprocess.Popen | None = None
        self.proxy_pid: int | None = None
        self.timings: dict[str, float] = {}

    # ---- set-up ----
    @property
    def url(self) -> str:
        return f"http://{self.site.ip}:{self.site.port}/"

    @property
    def exchange(self) -> Path:
        return Path(self.settings.exchange_root)

    def course_folder(self, instructor: str) -> Path:
        return self.members[instructor].home / self.settings.course_folder

    def _timed(self, step: str, fn, *args):
        start = time.monotonic()
        result = fn(*args)
        self.timings[step] = time.monotonic() - start
        return result

    def start(self, wheel: Path | None = None, timeout_s: float = 60) -> LocalHub:
        self._timed("users", self._make_users)
        self.exchange.mkdir(parents=True)
        self.exchange.chmod(0o1777)
        python = self._timed("environment", environment.build_environment, Path(self.site.environment))
        wheel = wheel or self._timed("wheel", environment.build_wheel, self.root / "dist")
        self._timed(
            "grader", environment.install_grader, Path(self.site.grader), python, wheel, self.settings.instructors_group
        )
        for member in self.members.values():
            if member.role == "instructor":
                self._make_course(member)
        state = Path(self.site.state)
        state.mkdir(mode=0o711)  # users read their role's configuration in it
        self.site.write(self.root / "site.json").chmod(0o644)
        self._timed("hub", self._start_hub, timeout_s)
        return self

    def _make_users(self) -> None:
        homes = self.root / "home"
        homes.mkdir(mode=0o755)
        for group in (self.settings.instructors_group, self.settings.students_group):
            accounts.create_group(group)
        for name, role in self.planned:
            group = self.settings.instructors_group if role == "instructor" else self.settings.students_group
            self.members[name] = Member(name, role, accounts.create_user(name, [group], homes=homes))

    def _make_course(self, member: Member) -> None:
        """The course (nbgrader_config.py, solutions/) in the instructor's home, theirs alone."""
        from autograde.nbgrader_course import make_course

        folder = make_course(self.course_folder(member.name))
        for path in [folder, *folder.rglob("*")]:
            shutil.chown(path, member.name, self.settings.instructors_group)
        folder.chmod(0o700)

    def _start_hub(self, timeout_s: float) -> None:
        env = {
            **os.environ,
            "COURSE_HUB_SITE": str(self.root / "site.json"),
            "COURSE_HUB_PASSWORD": self.password,
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        }
        log = (Path(self.site.state) / "jupyterhub.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(HUB_CONFIG)],
            cwd=self.site.state,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterHub exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "hub/api/", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"JupyterHub did not answer within {timeout_s:.0f} s:\n{self.log_tail()}")
            time.sleep(0.25)
        pid_file = Path(self.site.state) / "jupyterhub-proxy.pid"
        self.proxy_pid = int(pid_file.read_text()) if pid_file.exists() else None

    def log_tail(self, lines: int = 60) -> str:
        log = Path(self.site.state) / "jupyterhub.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"

    # ---- use ----
    def env_for(self, name: str) -> dict[str, str]:
        member = self.members[name]
        return user_environment(self.site, self.settings, member.role, member.home)

    def run_as(self, name: str, *command: str, cwd: Path | None = None, check: bool = True, timeout: float = 900):
        """Run ``command`` as user ``name`` (``runuser``) with the environment their server has."""
        env = self.env_for(name)
        args = ["runuser", "-u", name, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *command]
        proc = subprocess.run(args, cwd=cwd or self.members[name].home, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"as {name}: {' '.join(command)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def nbgrader(self, name: str, *args: str, cwd: Path | None = None, check: bool = True):
        """``nbgrader ARGS`` as user ``name``, the course environment's nbgrader."""
        return self.run_as(name, str(Path(self.site.environment) / "bin" / "nbgrader"), *args, cwd=cwd, check=check)

    # ---- tear-down ----
    def stop(self) -> None:
        """Stop the hub (it stops the servers and the proxy), then the proxy if it is still there, by their
        process ids; remove the users, their homes and processes, the groups and the hub's files."""
        errors = []
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.proxy_pid is not None and PROXY in _command_line(self.proxy_pid):
            accounts.stop_processes([self.proxy_pid])
        for name in list(self.members):
            try:
                accounts.remove_user(name)
            except RuntimeError as error:
                errors.append(str(error))
        for group in (self.settings.instructors_group, self.settings.students_group):
            try:
                accounts.remove_group(group)
            except RuntimeError as error:
                errors.append(str(error))
        shutil.rmtree(self.root, ignore_errors=True)
        if errors:
            raise RuntimeError("tearing the hub down: " + "; ".join(errors))

    def __enter__(self) -> LocalHub:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
