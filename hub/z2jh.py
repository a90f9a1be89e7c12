"""Zero to JupyterHub (JupyterHub on Kubernetes, the ``jupyterhub`` Helm chart 4.x): the course's values file,
``hub/z2jh/config.yaml``, written from hub/settings.toml (``python -m hub.z2jh``; a test checks it is current).

    helm upgrade --install course jupyterhub/jupyterhub --namespace course --values hub/z2jh/config.yaml

The exchange. nbgrader 0.9's exchange is a folder, protected by Unix permissions: students may write into
``inbound`` but not list it (mode 2733), and fetch only the feedback whose hashed name they know. On Kubernetes it
is a ReadWriteMany volume (NFS, CephFS, a cloud file store) mounted at the same path in every server, and its
permissions hold only when every user runs as a uid of their own: the chart runs everyone as uid 1000 by default,
under which any student could read every submission. So each user runs as ``uid_offset`` + their JupyterHub user
id (stable, unique), and an init container keeps the exchange's root at mode 1777. With
``Exchange.path_includes_course`` several courses can share the volume. This keeps nbgrader's own exchange, the
one the one-machine hub and the tests run, rather than a separate exchange service.

The roles. One JupyterHub group (``groups.instructors``) decides the role, as the system group does on one
machine: instructors get the instructor image (autograde, every nbgrader extension) and the course volume (the
course folder with nbgrader_config.py, solutions/ and the gradebook), where their JupyterLab opens; students get
the student image. Fill the groups with ``hub.loadGroups`` below, or let the authenticator manage them
(``Authenticator.manage_groups``, e.g. from an institution's OAuth groups).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from hub.settings import HubSettings, load

CONFIG_YAML = Path(__file__).resolve().parent / "z2jh" / "config.yaml"
IMAGE_CONFIG = "/usr/local/etc/jupyter"  # hub/Dockerfile: <sys.prefix>/etc/jupyter/<role>

HEADER = """\
# Zero to JupyterHub values for the course (the jupyterhub Helm chart, 4.x).
# WRITTEN BY `python -m hub.z2jh` FROM hub/settings.toml: change the settings there, then run it again.
#
#   helm upgrade --install course jupyterhub/jupyterhub --namespace course --values hub/z2jh/config.yaml
#
# Before: build and push the images (hub/Dockerfile, targets student and instructor); create the ReadWriteMany
# volume claims named below (the exchange, every user; the course folder, instructors); put the instructors in
# the instructors' group (hub.config.JupyterHub.load_groups, or your authenticator's groups); choose an
# authenticator (hub.config.JupyterHub.authenticator_class: your institution's OAuth, LTI or LDAP login).
# hub/z2jh.py explains the exchange (per-user uids) and the roles.
"""

HOOK = '''\
# The course's roles and uids (hub/z2jh.py explains them), from hub/settings.toml.
INSTRUCTORS_GROUP = {instructors!r}
INSTRUCTOR_IMAGE = {instructor_image!r}
COURSE_CLAIM = {course_claim!r}
COURSE_MOUNT = {course_mount!r}
INSTRUCTOR_CONFIG = {instructor_config!r}
UID_OFFSET = {uid_offset!r}


def course_uid(spawner):
    """A uid of the user's own: nbgrader's exchange permissions depend on it."""
    return UID_OFFSET + spawner.user.id


def course_pre_spawn_hook(spawner):
    """Instructors: their image, the course volume, JupyterLab in the course folder."""
    if INSTRUCTORS_GROUP not in {{group.name for group in spawner.user.groups}}:
        return
    spawner.image = INSTRUCTOR_IMAGE
    spawner.volumes = [*spawner.volumes, {{"name": "course", "persistentVolumeClaim": {{"claimName": COURSE_CLAIM}}}}]
    spawner.volume_mounts = [*spawner.volume_mounts, {{"name": "course", "mountPath": COURSE_MOUNT}}]
    spawner.notebook_dir = COURSE_MOUNT
    # the course's nbgrader_config.py, for the formgrader (whose server runs in the home)
    spawner.environment["JUPYTER_CONFIG_PATH"] = INSTRUCTOR_CONFIG + ":" + COURSE_MOUNT


c.KubeSpawner.uid = course_uid
c.KubeSpawner.pre_spawn_hook = course_pre_spawn_hook
'''


def hook_source(settings: HubSettings) -> str:
    k8s = settings.kubernetes
    return HOOK.format(
        instructors=settings.instructors_group,
        instructor_image=f"{k8s['instructor_image']}:{k8s['tag']}",
        course_claim=k8s["course_claim"],
        course_mount=k8s["course_mount"],
        instructor_config=f"{IMAGE_CONFIG}/instructor",
        uid_offset=int(k8s["uid_offset"]),
    )


def values(settings: HubSettings) -> dict:
    """The chart's values for the course."""
    k8s, gpu = settings.kubernetes, settings.gpu
    exchange = {"name": "nbgrader-exchange", "persistentVolumeClaim": {"claimName": k8s["exchange_claim"]}}
    exchange_mount = {"name": "nbgrader-exchange", "mountPath": settings.exchange_root}
    return {
        "hub": {
            "config": {
                "JupyterHub": {
                    "load_groups": {
                        settings.instructors_group: {"users": []},
                        settings.students_group: {"users": []},
                    },
                },
            },
            "extraConfig": {"course.py": hook_source(settings)},
        },
        "singleuser": {
            "image": {"name": k8s["image"], "tag": k8s["tag"]},
            "cmd": "jupyterhub-singleuser",
            "defaultUrl": "/lab",
            "fsGid": 100,
            "cpu": {"limit": settings.cpu_limit, "guarantee": settings.cpu_guarantee},
            "memory": {"limit": settings.memory_limit, "guarantee": settings.memory_guarantee},
            "storage": {"extraVolumes": [exchange], "extraVolumeMounts": [exchange_mount]},
            "initContainers": [
                {
                    "name": "nbgrader-exchange-permissions",
                    "image": f"{k8s['image']}:{k8s['tag']}",
                    "command": [
                        "sh",
                        "-c",
                        f"mkdir -p {settings.exchange_root} && chmod 1777 {settings.exchange_root}",
                    ],
                    "securityContext": {"runAsUser": 0},
                    "volumeMounts": [exchange_mount],
                }
            ],
            "profileList": [
                {
                    "display_name": "CPU",
                    "description": f"{settings.cpu_limit:g} CPUs, {settings.memory_limit} of memory",
                    "default": True,
                },
                {
                    "display_name": gpu["display_name"],
                    "description": f"{gpu['count']} GPU, {gpu['memory_limit']} of memory",
                    "kubespawner_override": {
                        "extra_resource_limits": {"nvidia.com/gpu": str(gpu["count"])},
                        "node_selector": {gpu["node_label"]: "true"},
                        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                        "mem_limit": gpu["memory_limit"],
                    },
                },
            ],
        },
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks (the Python of extraConfig reads as Python); no anchors."""

    def ignore_aliases(self, data) -> bool:
        return True


_Dumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None),
)


def render(settings: HubSettings | None = None) -> str:
    """config.yaml's text."""
    return HEADER + yaml.dump(values(settings or load()), Dumper=_Dumper, sort_keys=False, width=120)


def main(argv: list[str] | None = None) -> None:
    CONFIG_YAML.parent.mkdir(parents=True, exist_ok=True)
    CONFIG_YAML.write_text(render())
    print(f"wrote {CONFIG_YAML} from hub/settings.toml", file=sys.stderr)


if __name__ == "__main__":
    main()
