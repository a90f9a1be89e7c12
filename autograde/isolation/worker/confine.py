"""Confine a forked worker with what the kernel enforces, before any student code runs (standard library only).

Each protection is one function; :func:`confine` applies those a :class:`Plan` asks for, in this order:

1. ``namespaces``: new mount, PID, network, IPC and UTS namespaces (and a user namespace when the grader is not
   root). The worker's filesystem becomes a fresh tmpfs holding read-only bind mounts of the read roots only
   (the interpreter, site-packages without the grader, the staged ``course_utils``, system libraries), its own
   scratch folder read-write, a small ``/tmp``, a minimal ``/dev`` and its own ``/proc``; ``pivot_root``
   makes that the root. The graders, references, solutions, submissions and data are simply not there.
2. ``separate_user``: when the grader runs as root, the worker becomes an unprivileged user of its own
   (``uid`` chosen by the zygote, different for every live worker), with no supplementary groups.
3. ``no_new_privs`` and the dumpable flag off (no other worker can read its memory).
4. ``capabilities``: every capability dropped, the bounding set included.
5. ``landlock``: only the read roots are readable and only the scratch folder and ``/tmp`` writable, whatever
   the mounts and file modes say; no TCP; no signal and no abstract UNIX socket outside the worker.
6. ``seccomp``: a BPF filter that refuses new processes (threads are allowed), ``execve``, sockets,
   ``ptrace`` and other processes' memory, mounts and namespaces, kernel keyrings, BPF, ``io_uring``,
   signals to other processes and the like, with ``EPERM``.
7. resource limits (address space, CPU time, file size, open files, no core files).

:func:`probe` tries every protection in a throw-away child and reports which the machine allows, so that the
grader can say which are active and a real worker only attempts those.
"""

import ctypes
import errno
import os
import platform
import resource
import signal
import struct
import tempfile

# ------------------------------------------------------------------------------------------------ libc
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
CLONE_THREAD = 0x00010000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP = 4, 24, 38, 22
SECCOMP_MODE_FILTER = 2
NOBODY = 65534
PROTECTIONS = (
    "namespaces",
    "separate_user",
    "no_new_privs",
    "capabilities",
    "landlock",
    "seccomp",
    "resource_limits",
)


class ConfinementError(RuntimeError):
    """A protection the plan asked for could not be applied."""


_LIBC = None


def libc():
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def _check(result, what):
    if result == -1 or result is None:
        code = ctypes.get_errno()
        raise ConfinementError(f"{what} failed: {os.strerror(code)} (errno {code})")
    return result


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


# ------------------------------------------------------------------------------------------ the plan
class Plan:
    """What to apply to one worker. ``read_roots``: paths it may read (files or folders); ``hide``: paths
    under a read root it must not see; ``scratch``: its own folder (read-write); ``uid``: its user when the
    grader is root; ``enable``: the protections to apply (names of :data:`PROTECTIONS`)."""

    def __init__(self, read_roots, hide, scratch, uid, enable, limits):
        self.read_roots = [p for p in read_roots if os.path.exists(p)]
        self.hide = [p for p in hide if os.path.exists(p)]
        self.scratch = scratch
        self.uid = uid
        self.enable = set(enable)
        self.limits = limits


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


# ---------------------------------------------------------------------------------------- namespaces
def enter_namespaces(as_root):
    """New mount, PID, network, IPC and UTS namespaces (and a user namespace unless ``as_root``)."""
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWPID
    uid, gid = os.geteuid(), os.getegid()
    if not as_root:
        flags |= CLONE_NEWUSER
    _check(libc().unshare(flags), "unshare")
    if not as_root:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{NOBODY} {uid} 1")  # an ordinary user inside; the namespace's
        _write("/proc/self/gid_map", f"{NOBODY} {gid} 1")  # capabilities last until drop_capabilities
    _mount(None, "/", None, MS_REC | MS_PRIVATE)


def _mount(source, target, fstype, flags, data=None):
    enc = [None if s is None else s.encode() for s in (source, target, fstype, data)]
    _check(libc().mount(enc[0], enc[1], enc[2], flags, enc[3]), f"mount {target}")


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
    _mount("tmpfs", new_root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64m,mode=1777")
    for path in plan.read_roots:
        _bind(path, new_root + path)
    for path in plan.hide:  # hidden below a read root (an installed copy of the grader in site-packages)
        target = new_root + path
        if os.path.isdir(target):
            _mount("tmpfs", target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k")
        elif os.path.exists(target):
            _mount("/dev/null", target, None, MS_BIND)
    _bind(plan.scratch, new_root + plan.scratch, writable=True)
    for name in ("null", "zero", "urandom", "random"):
        _bind(f"/dev/{name}", f"{new_root}/dev/{name}", writable=name == "null")
    os.makedirs(new_root + "/proc", exist_ok=True)
    _mount("proc", new_root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    old = new_root + "/.old-root"
    os.makedirs(old, exist_ok=True)
    _check(libc().syscall(_nr("pivot_root"), new_root.encode(), old.encode()), "pivot_root")
    os.chdir("/")
    _check(libc().umount2(b"/.old-root", MNT_DETACH), "umount the old root")
    os.rmdir("/.old-root")
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


# ------------------------------------------------------------------------------------- user, privileges
def become(uid):
    """Switch to ``uid`` (and the group of the same number) with no supplementary groups; root only."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise ConfinementError("could not switch to the sandbox's user")


def no_new_privs():
    _check(libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _check(libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "dumpable off")


def drop_bounding_set():
    """Empty the bounding and ambient sets (needs CAP_SETPCAP, so before switching user)."""
    cap = 0
    while libc().prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
        cap += 1
    libc().prctl(47, 4, 0, 0, 0)  # PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL


def drop_capabilities():
    """Empty the effective, permitted and inheritable sets and check it. The bounding set is emptied too where
    the process may (root, or inside its own user namespace); an unprivileged process without namespaces has no
    capabilities to lose, and no_new_privs keeps it from gaining any."""
    header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = ctypes.create_string_buffer(b"\0" * 24)
    _check(libc().syscall(_nr("capset"), ctypes.c_char_p(header), data), "capset")
    status = open("/proc/self/status").read()
    for key in ("CapEff", "CapPrm", "CapInh"):
        line = next(x for x in status.splitlines() if x.startswith(key + ":"))
        if int(line.split()[1], 16):
            raise ConfinementError(f"{key} is not empty after dropping capabilities")


# ------------------------------------------------------------------------------------------- landlock
LL_EXECUTE, LL_WRITE_FILE, LL_READ_FILE, LL_READ_DIR = 1, 2, 4, 8
LL_ALL_FS = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
LL_READ = LL_EXECUTE | LL_READ_FILE | LL_READ_DIR
LL_FILE_RIGHTS = LL_EXECUTE | LL_WRITE_FILE | LL_READ_FILE | (1 << 14) | (1 << 15)
O_PATH = 0o10000000


def landlock_abi():
    """The Landlock ABI version the kernel offers, 0 when it has none."""
    try:
        version = libc().syscall(_nr("landlock_create_ruleset"), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
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
    ruleset = _check(
        libc().syscall(_nr("landlock_create_ruleset"), ctypes.c_char_p(attr), ctypes.c_size_t(size), 0),
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
                    _check(
                        libc().syscall(_nr("landlock_add_rule"), ruleset, 1, ctypes.c_char_p(rule), 0),
                        f"landlock rule for {path}",
                    )
                finally:
                    os.close(fd)
        _check(libc().syscall(_nr("landlock_restrict_self"), ruleset, 0), "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi


# -------------------------------------------------------------------------------------------- seccomp
SYSCALLS = {
    # name: (x86_64, aarch64); None where the architecture has no such call
    "fork": (57, None),
    "vfork": (58, None),
    "clone": (56, 220),
    "clone3": (435, 435),
    "execve": (59, 221),
    "execveat": (322, 281),
    "socket": (41, 198),
    "socketpair": (53, 199),
    "ptrace": (101, 117),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "kcmp": (312, 272),
    "pidfd_open": (434, 434),
    "pidfd_getfd": (438, 438),
    "pidfd_send_signal": (424, 424),
    "kill": (62, 129),
    "tkill": (200, 130),
    "tgkill": (234, 131),
    "mount": (165, 40),
    "umount2": (166, 39),
    "pivot_root": (155, 41),
    "chroot": (161, 51),
    "unshare": (272, 97),
    "setns": (308, 268),
    "open_tree": (428, 428),
    "move_mount": (429, 429),
    "fsopen": (430, 430),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fspick": (433, 433),
    "mount_setattr": (442, 442),
    "bpf": (321, 280),
    "perf_event_open": (298, 241),
    "userfaultfd": (323, 282),
    "io_uring_setup": (425, 425),
    "keyctl": (250, 219),
    "add_key": (248, 217),
    "request_key": (249, 218),
    "kexec_load": (246, 104),
    "kexec_file_load": (320, 294),
    "init_module": (175, 105),
    "finit_module": (313, 273),
    "delete_module": (176, 106),
    "reboot": (169, 142),
    "swapon": (167, 224),
    "swapoff": (168, 225),
    "acct": (163, 89),
    "quotactl": (179, 60),
    "name_to_handle_at": (303, 264),
    "open_by_handle_at": (304, 265),
    "personality": (135, 92),
    "capset": (126, 91),
    "landlock_create_ruleset": (444, 444),
    "landlock_add_rule": (445, 445),
    "landlock_restrict_self": (446, 446),
}
DENIED = (
    "fork", "vfork", "execve", "execveat", "socket", "socketpair", "ptrace", "process_vm_readv",
    "process_vm_writev", "kcmp", "pidfd_open", "pidfd_getfd", "pidfd_send_signal", "tkill", "mount", "umount2",
    "pivot_root", "chroot", "unshare", "setns", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount",
    "fspick", "mount_setattr", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "keyctl", "add_key",
    "request_key", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "name_to_handle_at", "open_by_handle_at", "personality",
)  # fmt: skip
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
RET_ALLOW, RET_KILL = 0x7FFF0000, 0x80000000
LD_W_ABS, JEQ_K, JGE_K, JSET_K, RET_K = 0x20, 0x15, 0x35, 0x45, 0x06


def _arch_index():
    machine = platform.machine()
    if machine not in AUDIT_ARCH:
        raise ConfinementError(f"no seccomp filter for the {machine} architecture")
    return 0 if machine == "x86_64" else 1


def _nr(name):
    number = SYSCALLS[name][_arch_index()]
    if number is None:
        raise ConfinementError(f"{name} does not exist on {platform.machine()}")
    return number


def seccomp_program(own_pid):
    """The BPF program: ALLOW, except the denied calls (EPERM), clone3 (ENOSYS, so that libc falls back to
    clone), clone without CLONE_THREAD, and kill / tgkill aimed at any process but this one."""
    arch = _arch_index()
    machine = platform.machine()
    deny = RET_K, 0, 0, 0x00050000 | errno.EPERM
    prog = [
        (LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        (JEQ_K, 1, 0, AUDIT_ARCH[machine]),
        (RET_K, 0, 0, RET_KILL),
        (LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
    ]
    if machine == "x86_64":
        prog += [(JGE_K, 0, 1, 0x40000000), deny]  # x32 system calls
    for name in DENIED:
        number = SYSCALLS[name][arch]
        if number is not None:
            prog += [(JEQ_K, 0, 1, number), deny]
    prog += [(JEQ_K, 0, 1, SYSCALLS["clone3"][arch]), (RET_K, 0, 0, 0x00050000 | errno.ENOSYS)]
    # clone: threads only (flags are argument 0, whose low word is at offset 16)
    prog += [
        (JEQ_K, 0, 4, SYSCALLS["clone"][arch]),
        (LD_W_ABS, 0, 0, 16),
        (JSET_K, 1, 0, CLONE_THREAD),
        deny,
        (RET_K, 0, 0, RET_ALLOW),
        (LD_W_ABS, 0, 0, 0),
    ]
    # kill(pid, sig): pid 0 (its own process group: it leads a session of its own) or itself
    for name in ("kill", "tgkill"):
        prog += [
            (JEQ_K, 0, 5, SYSCALLS[name][arch]),
            (LD_W_ABS, 0, 0, 16),
            (JEQ_K, 2, 0, own_pid),
            (JEQ_K, 1, 0, 0) if name == "kill" else (JEQ_K, 1, 0, own_pid),
            deny,
            (RET_K, 0, 0, RET_ALLOW),
        ]
        prog.append((LD_W_ABS, 0, 0, 0))
    prog.append((RET_K, 0, 0, RET_ALLOW))
    return prog


def apply_seccomp():
    prog = seccomp_program(os.getpid())
    raw = b"".join(struct.pack("HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(prog), ctypes.cast(buf, ctypes.c_void_p))
    _check(libc().prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp")


# -------------------------------------------------------------------------------------- resource limits
def set_limits(limits):
    """Address space (on top of what the process holds now), CPU seconds, file size, open files, no core."""
    status = open("/proc/self/status").read()
    vm_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmSize:"))
    address_space = vm_kb * 1024 + limits["memory_mb"] * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_seconds"], limits["cpu_seconds"] + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_bytes"], limits["file_bytes"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["open_files"], limits["open_files"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


# ------------------------------------------------------------------------------------------- together
def _mirror(pid, by_signal):
    """Wait for ``pid`` and end the same way: by its signal (``by_signal``) or by exit code 128 + signal."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
    if by_signal and code > 128:
        signal.signal(code - 128, signal.SIG_DFL)
        os.kill(os.getpid(), code - 128)
    os._exit(code)


def confine(plan, keep_fds=()):
    """Apply ``plan`` to this process (a fresh child of the zygote). Returns what was applied, by name.

    With namespaces the calling process forks twice: it stays outside the new PID namespace and mirrors the
    namespace's init, which mirrors the worker (init ignores signals sent from inside, and when it ends the
    kernel kills everything in the namespace). Only the worker returns; the others close ``keep_fds``.
    """
    applied = {}
    as_root = os.geteuid() == 0
    if "namespaces" in plan.enable:
        new_root = plan.scratch.rstrip("/") + "-root"
        os.mkdir(new_root, 0o755)
        enter_namespaces(as_root)
        for by_signal in (True, False):
            pid = os.fork()
            if pid:
                for fd in keep_fds:
                    os.close(fd)
                _mirror(pid, by_signal)
        os.setsid()  # a session of its own inside the namespace: kill(0) reaches nobody else
        build_root(plan, new_root)
        applied["namespaces"] = "mount, PID, network, IPC and UTS" + ("" if as_root else ", user")
    if "separate_user" in plan.enable:
        if not as_root:
            raise ConfinementError("a separate user needs the grader to run as root")
        os.chown(plan.scratch, plan.uid, plan.uid)
        os.chmod(plan.scratch, 0o700)
    os.chdir(plan.scratch)
    try:  # the kernel's out-of-memory killer takes a worker before anything else
        _write("/proc/self/oom_score_adj", "1000")
    except OSError:
        pass
    if "capabilities" in plan.enable:
        drop_bounding_set()
    if "separate_user" in plan.enable:
        become(plan.uid)
        applied["separate_user"] = f"uid {plan.uid}"
    if "no_new_privs" in plan.enable:
        no_new_privs()
        applied["no_new_privs"] = "on"
    if "capabilities" in plan.enable:
        drop_capabilities()
        applied["capabilities"] = "all dropped"
    if "landlock" in plan.enable:
        writable = [plan.scratch, "/tmp", "/dev/null"] if "namespaces" in plan.enable else [plan.scratch, "/dev/null"]
        system = ["/proc/self", "/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/sys/devices/system/cpu"]
        system += ["/dev/zero", "/dev/urandom", "/dev/random"]
        applied["landlock"] = f"ABI {apply_landlock(visible_entries(plan) + system, writable)}"
    if "resource_limits" in plan.enable:
        set_limits(plan.limits)
        applied["resource_limits"] = "memory, CPU time, file size, open files"
    if "seccomp" in plan.enable:
        apply_seccomp()
        applied["seccomp"] = "no processes, exec, sockets, ptrace, mounts, namespaces or foreign signals"
    return applied


def probe(plan):
    """Which protections this machine allows: each tried alone in a throw-away child, then all together.

    Returns (allowed names, {name: reason refused}).
    """
    refused = {}
    for name in PROTECTIONS:
        if name == "separate_user" and os.geteuid() != 0:
            refused[name] = "the grader does not run as root"
            continue
        ok, why = _try(plan, {name} | ({"no_new_privs"} if name in ("landlock", "seccomp") else set()))
        if not ok:
            refused[name] = why
    allowed = [n for n in PROTECTIONS if n not in refused]
    ok, why = _try(plan, set(allowed))
    if not ok:
        raise ConfinementError(f"the protections work one by one but not together: {why}")
    return allowed, refused


def _try(plan, names):
    scratch = tempfile.mkdtemp(prefix="probe-", dir=plan.scratch)
    try:
        return _trial(Plan(plan.read_roots, plan.hide, scratch, plan.uid, names, plan.limits))
    finally:
        for path in (scratch, scratch + "-root"):
            try:
                os.rmdir(path)
            except OSError:
                pass


def _trial(trial):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        code = 1
        try:
            confine(trial, keep_fds=(write,))
            os.write(write, b"ok")
            code = 0
        except BaseException as exc:  # noqa: BLE001 - the reason goes back to the zygote
            try:
                os.write(write, f"{type(exc).__name__}: {exc}".encode()[:1000])
            except OSError:
                pass
        finally:
            os._exit(code)
    os.close(write)
    chunks = []
    while True:
        data = os.read(read, 4096)
        if not data:
            break
        chunks.append(data)
    os.close(read)
    os.waitpid(pid, 0)
    message = b"".join(chunks).decode(errors="replace")
    return message == "ok", message or "the trial process died"
