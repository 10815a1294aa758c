"""What every server model offers: ``serve`` a listening socket until ``stop``.

The listening socket is created by the caller (the CLI, a test, the C10K lab), so every
model is measured behind the same backlog and socket options.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Protocol

from ioreactor_tools.models.handlers import ProtocolName


@dataclass(frozen=True, slots=True)
class ModelOptions:
    """Knobs shared by the models; each model reads only the ones it has.

    ``workers`` is the thread-pool size (and, for the reactor models, the sub-reactor
    count); ``queue_size`` bounds the pool's queue of accepted connections.
    """

    protocol: ProtocolName = "echo"
    workers: int = 8
    queue_size: int = 256


class ServerModel(Protocol):
    """A server model: ``serve`` blocks until ``stop`` is called from elsewhere.

    ``stop`` must be safe to call from another thread and from a signal handler; when
    ``serve`` returns, every connection the model accepted is closed and every thread
    or process it started is gone.
    """

    def serve(self, listener: socket.socket) -> None: ...

    def stop(self) -> None: ...
