"""Landlock: only the read roots are readable and only the scratch folder (and ``/tmp``) writable, whatever the
mounts and file modes say; no TCP; no signal and no abstract UNIX socket outside the worker's domain."""

import ctypes
import os
import struct

from .libc import ConfinementError, check, libc, nr

LL_EXECUTE, LL_WRITE_FILE, LL_READ_FILE, LL_READ_DIR = 1, 2, 4, 8
LL_ALL_FS = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
LL_READ = LL_EXECUTE | LL_READ_FILE | LL_READ_DIR
LL_FILE_RIGHTS = LL_EXECUTE | LL_WRITE_FILE | LL_READ_FILE | (1 << 14) | (1 << 15)
O_PATH = 0o10000000


def landlock_abi():
    """The Landlock ABI version the kernel offers, 0 when it has none."""
    try:
        version = libc().syscall(nr("landlock_create_ruleset"), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    except ConfinementError:
        return 0
    return max(int(version), 0)


def apply_landlock(read, write):
    """Allow reading below ``read`` and everything below ``write``; deny all other file access, TCP, and
    signals and abstract UNIX sockets outside this process's domain (as far as the ABI knows them)."""
    abi = landlock_abi()
    if abi < 1:
        raise ConfinementError("the kernel offers no Landlock")
    handled = LL_ALL_FS[min(abi, 5)]
    attr = struct.pack("QQQ", handled, 3 if abi >= 4 else 0, 3 if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = check(
        libc().syscall(nr("landlock_create_ruleset"), ctypes.c_char_p(attr), ctypes.c_size_t(size), 0),
        "landlock_create_ruleset",
    )
    try:
        for paths, rights in ((read, LL_READ), (write, handled)):
            for path in paths:
                try:
                    fd = os.open(path, O_PATH | os.O_CLOEXEC)
                except OSError:
                    continue
                try:
                    allowed = rights if os.path.isdir(path) else rights & LL_FILE_RIGHTS & handled
                    rule = struct.pack("=Qi", allowed, fd)
                    check(
                        libc().syscall(nr("landlock_add_rule"), ruleset, 1, ctypes.c_char_p(rule), 0),
                        f"landlock rule for {path}",
                    )
                finally:
                    os.close(fd)
        check(libc().syscall(nr("landlock_restrict_self"), ruleset, 0), "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi
