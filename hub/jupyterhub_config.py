"""JupyterHub for the course on one machine: local users, every server in the course environment, nbgrader's
exchange and course id for everyone, nbgrader's instructor extensions for instructors only, private homes.

    sudo COURSE_HUB_PASSWORD=... .venv/bin/jupyterhub -f hub/jupyterhub_config.py

Course settings (course id, exchange, groups, which extensions are the instructors') come from hub/settings.toml;
where this machine keeps things comes from the JSON file that ``$COURSE_HUB_SITE`` names (``make hub`` and the hub
test write one; see ``hub.launch.Site``), else from the defaults under /srv/attention-course. Who may log in is
who is in the instructors' or the students' system group; the group decides the role. Users log in with the shared
password in ``$COURSE_HUB_PASSWORD`` (JupyterHub's SharedPasswordAuthenticator: for a demonstration or a test; a
course uses its institution's login, e.g. an OAuthenticator, with the same groups).
"""

import grp
import os
import pwd
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: the hub package

from hub.launch import Site, user_environment  # noqa: E402
from hub.roles import write_role_config  # noqa: E402

c = get_config()  # noqa: F821 (provided by JupyterHub)

site = Site.read(os.environ.get("COURSE_HUB_SITE"))
settings = site.settings()
state = Path(site.state)
state.mkdir(mode=0o711, parents=True, exist_ok=True)  # users read their role's configuration
for role in ("student", "instructor"):  # the folders user_environment() puts on JUPYTER_CONFIG_PATH
    write_role_config(state / "jupyter" / role, role, settings)


def members(group: str) -> set[str]:
    try:
        return set(grp.getgrnam(group).gr_mem)
    except KeyError:
        return set()


instructors, students = members(settings.instructors_group), members(settings.students_group)

# The hub, its proxy (configurable-http-proxy, started by the hub) and their state, on this machine only.
c.JupyterHub.ip = site.ip
c.JupyterHub.port = site.port
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = site.hub_port
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{site.proxy_api_port}"
c.ConfigurableHTTPProxy.pid_file = str(state / "jupyterhub-proxy.pid")
c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
c.JupyterHub.cleanup_servers = True  # stopping the hub stops every user's server

# Who logs in, and as what.
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = os.environ["COURSE_HUB_PASSWORD"]
c.Authenticator.allowed_users = instructors | students
c.JupyterHub.load_groups = {
    settings.instructors_group: {"users": sorted(instructors)},
    settings.students_group: {"users": sorted(students)},
}

# Every user's server: the course environment, started as that user (LocalProcessSpawner, the hub runs as root).
environment = Path(site.environment)
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [str(environment / "bin" / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.disable_user_config = True  # ~/.jupyter cannot switch the instructors' extensions back on
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.Spawner.mem_limit = settings.memory_limit  # shown to the server; LocalProcessSpawner does not enforce it
c.Spawner.cpu_limit = settings.cpu_limit


def pre_spawn_hook(spawner) -> None:
    """The user's role decides their configuration; their home is closed to others before their server starts."""
    name = spawner.user.name
    home = Path(pwd.getpwnam(name).pw_dir)
    if home.stat().st_mode & 0o077:
        home.chmod(0o700)
    role = "instructor" if name in instructors else "student"
    spawner.environment.update(user_environment(site, settings, role, home))
    if role == "instructor":
        # the course folder (nbgrader_config.py, solutions/, course/) is where an instructor's JupyterLab opens,
        # so that the formgrader and nbgrader's commands read the course's nbgrader_config.py
        spawner.notebook_dir = str(home / settings.course_folder)
    else:
        spawner.notebook_dir = str(home)


c.Spawner.pre_spawn_hook = pre_spawn_hook
