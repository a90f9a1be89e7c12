"""Who the worker is: a user of its own (when the grader is root), no_new_privs, no capabilities."""

import ctypes
import os
import struct

from .libc import (
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_CAPBSET_DROP,
    PR_SET_DUMPABLE,
    PR_SET_NO_NEW_PRIVS,
    ConfinementError,
    check,
    libc,
    nr,
)


def become(uid):
    """Switch to ``uid`` (and the group of the same number) with no supplementary groups; root only."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise ConfinementError("could not switch to the sandbox's user")


def no_new_privs():
    check(libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    check(libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "dumpable off")


def drop_bounding_set():
    """Empty the bounding and ambient sets (needs CAP_SETPCAP, so before switching user)."""
    cap = 0
    while libc().prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
        cap += 1
    libc().prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)


def drop_capabilities():
    """Empty the effective, permitted and inheritable sets and check it. The bounding set is emptied too where
    the process may (root, or inside its own user namespace); an unprivileged process without namespaces has no
    capabilities to lose, and no_new_privs keeps it from gaining any."""
    header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = ctypes.create_string_buffer(b"\0" * 24)
    check(libc().syscall(nr("capset"), ctypes.c_char_p(header), data), "capset")
    status = open("/proc/self/status").read()
    for key in ("CapEff", "CapPrm", "CapInh"):
        line = next(x for x in status.splitlines() if x.startswith(key + ":"))
        if int(line.split()[1], 16):
            raise ConfinementError(f"{key} is not empty after dropping capabilities")
