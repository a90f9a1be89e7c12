"""Resource limits: address space, CPU time, file size, open files, no core files."""

import resource
import signal


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
