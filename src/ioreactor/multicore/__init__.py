"""Every core: worker processes under a supervisor, fed by SO_REUSEPORT or fd passing.

Three models (docs/multicore.md has the diagrams and the measured numbers):

- threads: ``TcpServer(loops=N)``, a main loop that accepts and N sub-loop threads;
- reuseport processes: each worker binds its own SO_REUSEPORT listener;
- fd-passing processes: the supervisor accepts and passes fds over SCM_RIGHTS.

:func:`run_server` runs any of them (and combinations: threads inside each worker).
"""

from ioreactor.multicore.config import (
    DISPATCHES,
    Dispatch,
    ServeConfig,
    WorkerContext,
    default_dispatch,
    default_workers,
)
from ioreactor.multicore.serve import run_server
from ioreactor.multicore.signals import FORCED_EXIT, describe_exit
from ioreactor.multicore.supervisor import RestartBackoff, Supervisor

__all__ = [
    "DISPATCHES",
    "FORCED_EXIT",
    "Dispatch",
    "RestartBackoff",
    "ServeConfig",
    "Supervisor",
    "WorkerContext",
    "default_dispatch",
    "default_workers",
    "describe_exit",
    "run_server",
]
