"""Models by name: ``ioreactor model NAME`` and the C10K lab look them up here.

A factory takes the shared :class:`ModelOptions`. The names follow the course's five
models; the fifth, asynchronous I/O, is the io_uring completion loop (``async-uring``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ioreactor_tools.models.base import ModelOptions, ServerModel
from ioreactor_tools.models.process_per_connection import ProcessPerConnection
from ioreactor_tools.models.reactor import Reactor
from ioreactor_tools.models.thread_per_connection import ThreadPerConnection
from ioreactor_tools.models.thread_pool import ThreadPool

ModelFactory = Callable[[ModelOptions], ServerModel]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A registered model: how to build it, and the course's name for it."""

    factory: ModelFactory
    summary: str


MODELS: dict[str, ModelSpec] = {
    "process-per-connection": ModelSpec(
        ProcessPerConnection, "blocking I/O, fork a process per connection (阻塞 IO + 进程)"
    ),
    "thread-per-connection": ModelSpec(
        ThreadPerConnection, "blocking I/O, a thread per connection (阻塞 IO + 线程)"
    ),
    "thread-pool": ModelSpec(
        ThreadPool, "blocking I/O, fixed thread pool fed by a blocking queue (线程池)"
    ),
    "reactor-select": ModelSpec(
        lambda o: Reactor(o, "select", 0), "non-blocking I/O, one reactor thread on select"
    ),
    "reactor-poll": ModelSpec(
        lambda o: Reactor(o, "poll", 0), "non-blocking I/O, one reactor thread on poll"
    ),
    "reactor-epoll": ModelSpec(
        lambda o: Reactor(o, "epoll", 0), "non-blocking I/O, one reactor thread on epoll"
    ),
    "main-sub": ModelSpec(
        lambda o: Reactor(o, "epoll", o.workers),
        "main reactor accepts, WORKERS sub-reactor threads serve (主-从 reactor)",
    ),
    "async-uring": ModelSpec(
        lambda o: Reactor(o, "uring", 0),
        "asynchronous I/O: io_uring completions, one loop (异步 IO, Linux io_uring)",
    ),
}


def create_model(name: str, options: ModelOptions) -> ServerModel:
    """Build the model registered as ``name``."""
    try:
        spec = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None
    return spec.factory(options)
