"""A seccomp filter (classic BPF, assembled here: no libseccomp binding is needed) that
bwrap loads into the sandbox (`bwrap --seccomp FD`) before the entry starts.

Without cgroups, the watchdog bounds memory by the tree's resident memory and disk by the
output folder's size, polled. Some system calls get around both, so the sandbox refuses them:
- memfd_create: anonymous files whose pages count in no process's resident memory until
  mapped (measured: 1.25 GiB held under a 512 MB limit, unbounded but for the fd count);
- shmget, msgget: System V shared memory and message queues, which outlive every process
  that touched them until the IPC namespace ends (the same bypass);
- fallocate: gigabytes of real disk blocks in microseconds, between two polls of the output
  folder (measured: 3 GiB in 4 ms under a 32 MB limit). glibc's posix_fallocate falls back to
  writing, which the poll sees.
Every system call of another ABI (i386, x32) is refused, so the numbers above cannot be
dodged. On an architecture not listed here there is no filter (None).
"""

from __future__ import annotations

import errno
import os
import platform
import struct

_LD_W_ABS, _JEQ_K, _JSET_K, _RET_K = 0x20, 0x15, 0x45, 0x06
_RET_ALLOW, _RET_ERRNO = 0x7FFF0000, 0x00050000
_X32_BIT = 0x40000000
# machine: (AUDIT_ARCH_*, {syscall number: errno returned})
_ARCHES = {
    "x86_64": (0xC000003E, {319: errno.ENOSYS, 29: errno.EPERM, 68: errno.EPERM,
                            285: errno.EOPNOTSUPP}),
    "aarch64": (0xC00000B7, {279: errno.ENOSYS, 194: errno.EPERM, 186: errno.EPERM,
                             47: errno.EOPNOTSUPP}),
}


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes | None:
    """The filter for this machine (struct sock_filter[]), or None where it has none."""
    arch = _ARCHES.get(machine or platform.machine())
    if arch is None:
        return None
    audit_arch, refused = arch
    body = [_insn(_LD_W_ABS, 0)]  # nr
    if audit_arch == 0xC000003E:  # x32 system calls: the same numbers with this bit set
        body += [_insn(_JSET_K, _X32_BIT, 0, 1), _insn(_RET_K, _RET_ERRNO | errno.ENOSYS)]
    for nr, err in refused.items():
        body += [_insn(_JEQ_K, nr, 0, 1), _insn(_RET_K, _RET_ERRNO | err)]
    body.append(_insn(_RET_K, _RET_ALLOW))
    # arch check first: another ABI jumps over the whole body to its refusal
    head = [_insn(_LD_W_ABS, 4), _insn(_JEQ_K, audit_arch, 0, len(body))]
    return b"".join([*head, *body, _insn(_RET_K, _RET_ERRNO | errno.ENOSYS)])


def filter_fd() -> int | None:
    """A readable fd holding the filter (the read end of a pipe, written and closed; the
    caller passes it to bwrap and closes it), or None where there is no filter."""
    code = program()
    if code is None:
        return None
    read, write = os.pipe()
    try:
        os.write(write, code)  # a few hundred bytes: within any pipe's buffer
    finally:
        os.close(write)
    return read
