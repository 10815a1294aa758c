"""Raise the open-file soft limit to the hard limit (C10K, 操作系统层面: 文件句柄).

Every connection is a descriptor; a shell's default soft limit (often 1,024) caps a
server far below its hard limit, and an unprivileged process may raise soft up to hard.
"""

from __future__ import annotations

import resource


def raise_nofile_limit() -> int:
    """Set RLIMIT_NOFILE's soft limit to its hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = _nr_open()
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return max(soft, hard)


def _nr_open() -> int:
    """The kernel's ceiling for an "unlimited" hard limit."""
    with open("/proc/sys/fs/nr_open") as f:
        return int(f.read())
