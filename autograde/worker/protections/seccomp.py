"""A seccomp filter: refuses new processes (threads are allowed), ``execve``, sockets, ``ptrace`` and other
processes' memory, mounts and namespaces, kernel keyrings, BPF, ``io_uring``, SysV IPC (shared memory, semaphores
and message queues, which would outlive the worker where no IPC namespace holds them), the priorities of any
process, and signals, resource limits and scheduling of any process but the worker itself, with ``EPERM``. Where
workers cannot get a user of their own (no root), this is what keeps one from reaching the grader's processes."""

import ctypes
import errno
import os
import platform
import struct

from .libc import AUDIT_ARCH, PR_SET_SECCOMP, SYSCALLS, arch_index, check, libc

SECCOMP_MODE_FILTER = 2
CLONE_THREAD = 0x00010000


DENIED = (
    "fork", "vfork", "execve", "execveat", "socket", "socketpair", "ptrace", "process_vm_readv",
    "process_vm_writev", "kcmp", "pidfd_open", "pidfd_getfd", "pidfd_send_signal", "tkill", "mount", "umount2",
    "pivot_root", "chroot", "unshare", "setns", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount",
    "fspick", "mount_setattr", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "keyctl", "add_key",
    "request_key", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "name_to_handle_at", "open_by_handle_at", "personality",
    "setpriority", "ioprio_set", "process_madvise", "process_mrelease", "shmget", "shmat", "shmctl", "semget",
    "semop", "semctl", "semtimedop", "msgget", "msgsnd", "msgrcv", "msgctl",
)  # fmt: skip
# Calls whose first argument is a process id: allowed for 0 (the caller) or the worker's own pid only.
OWN_PROCESS_ONLY = (
    "prlimit64", "sched_setaffinity", "sched_setparam", "sched_setscheduler", "sched_setattr", "migrate_pages",
    "move_pages",
)  # fmt: skip
RET_ALLOW, RET_KILL = 0x7FFF0000, 0x80000000
LD_W_ABS, JEQ_K, JGE_K, JSET_K, RET_K = 0x20, 0x15, 0x35, 0x45, 0x06


def seccomp_program(own_pid):
    """The BPF program: ALLOW, except the denied calls (EPERM), clone3 (ENOSYS, so that libc falls back to
    clone), clone without CLONE_THREAD, and kill, tgkill and :data:`OWN_PROCESS_ONLY` aimed at any process but
    this one."""
    arch = arch_index()
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
    # calls on a process: pid 0 (the caller, or for kill its own process group: it leads a session of its own) or
    # itself. tgkill's first argument is the thread group, which must be this process.
    for name in ("kill", "tgkill", *OWN_PROCESS_ONLY):
        prog += [
            (JEQ_K, 0, 5, SYSCALLS[name][arch]),
            (LD_W_ABS, 0, 0, 16),
            (JEQ_K, 2, 0, own_pid),
            (JEQ_K, 1, 0, own_pid) if name == "tgkill" else (JEQ_K, 1, 0, 0),
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
    check(libc().prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp")
