"""The course on JupyterHub: one machine (``jupyterhub_config.py``, ``make hub``) and Kubernetes (``Dockerfile``,
``z2jh/config.yaml``), both from the settings in ``settings.toml``.

- ``settings``: reads ``settings.toml``;
- ``roles``: the Jupyter configuration of each role (nbgrader's exchange and course id, which nbgrader extensions);
- ``environment``: a course environment every local user can run, and the instructors' grading packages;
- ``accounts``: local users, groups and private homes (the demonstration hub and the hub test);
- ``launch``: a one-machine hub with its users, course, exchange and environment, started and stopped;
- ``z2jh``: writes ``z2jh/config.yaml`` (Zero to JupyterHub) from the settings;
- ``image``: the course's steps of the single-user images (``Dockerfile``);
- ``demo``: ``make hub``.
"""
