"""A filesystem of the worker's own: new mount, PID, network, IPC and UTS namespaces (and a user namespace when the
grader is not root), a fresh tmpfs root holding read-only bind mounts of the read roots only, the scratch folder as
a tmpfs of its own whose size is the scratch quota, a small ``/tmp``, a minimal ``/dev`` and its own ``/proc``;
``pivot_root`` makes that the root. The graders, references, solutions, submissions and data are simply not there.
"""

import os

from .libc import check, libc, nr, write

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
NOBODY = 65534


def _hidden(path, hide):
    return any(path == h or path.startswith(h.rstrip("/") + "/") for h in hide)


def visible_entries(plan):
    """The read roots with every hidden path cut out: a root that holds a hidden path is replaced by its
    other entries (recursively), as Landlock only allows and never denies below an allowed folder."""
    out = []

    def add(path):
        if _hidden(path, plan.hide):
            return
        if any(h.startswith(path.rstrip("/") + "/") for h in plan.hide) and os.path.isdir(path):
            for name in sorted(os.listdir(path)):
                add(os.path.join(path, name))
            return
        out.append(path)

    for root in plan.read_roots:
        add(root)
    return out


def enter_namespaces(as_root):
    """New mount, PID, network, IPC and UTS namespaces (and a user namespace unless ``as_root``)."""
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWPID
    uid, gid = os.geteuid(), os.getegid()
    if not as_root:
        flags |= CLONE_NEWUSER
    check(libc().unshare(flags), "unshare")
    if not as_root:
        write("/proc/self/setgroups", "deny")
        write("/proc/self/uid_map", f"{NOBODY} {uid} 1")  # an ordinary user inside; the namespace's
        write("/proc/self/gid_map", f"{NOBODY} {gid} 1")  # capabilities last until drop_capabilities
    _mount(None, "/", None, MS_REC | MS_PRIVATE)


def _mount(source, target, fstype, flags, data=None):
    enc = [None if s is None else s.encode() for s in (source, target, fstype, data)]
    check(libc().mount(enc[0], enc[1], enc[2], flags, enc[3]), f"mount {target}")


def _locked_flags(path):
    """The flags of the mount holding ``path`` that a remount must keep (nosuid, nodev, noexec, atime)."""
    f = os.statvfs(path).f_flag
    flags = MS_NOSUID | MS_NODEV
    for st, ms in ((os.ST_NOEXEC, MS_NOEXEC), (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME)):
        if f & st:
            flags |= ms
    if f & getattr(os, "ST_RELATIME", 4096):
        flags |= MS_RELATIME
    return flags


def _bind(source, target, writable=False):
    """Bind ``source`` at ``target`` (created as an empty file or folder), read-only unless ``writable``."""
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            open(target, "w").close()
    _mount(source, target, None, MS_BIND)
    flags = MS_REMOUNT | MS_BIND | _locked_flags(source) | (0 if writable else MS_RDONLY)
    _mount(None, target, None, flags)


def build_root(plan, new_root):
    """Make ``new_root`` (an empty folder) the worker's whole filesystem and switch to it (pivot_root)."""
    _mount("tmpfs", new_root, "tmpfs", MS_NOSUID | MS_NODEV, "size=8m,mode=755")
    os.makedirs(new_root + "/tmp", exist_ok=True)  # first: read roots and the scratch folder may lie below
    _mount("tmpfs", new_root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=8m,mode=1777")
    for path in plan.read_roots:
        _bind(path, new_root + path)
    for path in plan.hide:  # hidden below a read root (an installed copy of the grader in site-packages)
        target = new_root + path
        if os.path.isdir(target):
            _mount("tmpfs", target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k")
        elif os.path.exists(target):
            _mount("/dev/null", target, None, MS_BIND)
    os.makedirs(new_root + plan.scratch, exist_ok=True)  # the quota: what the kernel lets the tmpfs hold
    quota = f"size={plan.limits['scratch_bytes']},nr_inodes=10000,mode=700"
    _mount("tmpfs", new_root + plan.scratch, "tmpfs", MS_NOSUID | MS_NODEV, quota)
    for name in ("null", "zero", "urandom", "random"):
        _bind(f"/dev/{name}", f"{new_root}/dev/{name}", writable=name == "null")
    os.makedirs(new_root + "/proc", exist_ok=True)
    _mount("proc", new_root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    old = new_root + "/.old-root"
    os.makedirs(old, exist_ok=True)
    check(libc().syscall(nr("pivot_root"), new_root.encode(), old.encode()), "pivot_root")
    os.chdir("/")
    check(libc().umount2(b"/.old-root", MNT_DETACH), "umount the old root")
    os.rmdir("/.old-root")
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
