"""``make hub``: a demonstration hub on this machine, one instructor and two students, until Ctrl+C.

    sudo make hub                 # or: sudo .venv/bin/python -m hub.demo [--port 8000] [--course-data DIR]

Creates the local users ``course-teacher``, ``course-ana`` and ``course-ben`` (private homes under a temporary
folder), the course environment, the exchange and the instructor's course folder, starts JupyterHub with
configurable-http-proxy on a free local port and prints how to log in. Ctrl+C stops the hub and the proxy and
removes the users, their homes and everything else it made. Needs root (local users), Node.js and
configurable-http-proxy (README: "The course on JupyterHub").
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from hub.launch import LocalHub, missing_requirements

INSTRUCTOR = "course-teacher"
STUDENTS = ["course-ana", "course-ben"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A demonstration hub: one instructor, two students (needs root).")
    parser.add_argument("--port", type=int, default=0, help="the hub's port on 127.0.0.1 (default: a free one)")
    parser.add_argument(
        "--course-data",
        default=os.environ.get("COURSE_DATA", ""),
        help="a CIFAR-10 folder every user's notebooks read (COURSE_DATA); default: download on first use",
    )
    args = parser.parse_args(argv)
    reason = missing_requirements()
    if reason:
        print(f"cannot start the demonstration hub: {reason}", file=sys.stderr)
        return 2
    hub = LocalHub([INSTRUCTOR], STUDENTS, course_data=args.course_data, port=args.port or None)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        print("setting up users, the course environment and the hub (about half a minute)...", flush=True)
        hub.start()
        print(
            f"\nThe course hub is running at {hub.url}  (Ctrl+C stops it and removes its users)\n\n"
            f"  instructor: {INSTRUCTOR}   (JupyterLab opens in the course folder: Nbgrader -> Formgrader)\n"
            f"  students:   {', '.join(STUDENTS)}   (Nbgrader -> Assignment List)\n"
            f"  password:   {hub.password}   (the same for every user of this demonstration)\n\n"
            f'The README\'s section "A term on the demonstration hub" walks through a term on it.\n'
            f"From another machine: ssh -L {hub.site.port}:127.0.0.1:{hub.site.port} <this machine>, then open "
            f"http://127.0.0.1:{hub.site.port}/\n",
            flush=True,
        )
        while not stop.wait(1):
            if hub.process is not None and hub.process.poll() is not None:
                print(f"JupyterHub exited ({hub.process.returncode}):\n{hub.log_tail()}", file=sys.stderr)
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping the hub and removing its users...", flush=True)
        hub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
