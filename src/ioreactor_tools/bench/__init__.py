"""Benchmark infrastructure shared by every ``ioreactor bench`` command.

One concept a module, so a new benchmark (HTTP, UDP, heartbeat, multi-core) reuses the
parts and adds only its own load generator and peers:

``procstat``   CPU time, RSS and open fds of a process *tree*, read from ``/proc``
``pinning``    core plan, ``taskset`` pinning, :class:`ServerProcess` (start, wait for the
               port, sample, SIGTERM then SIGKILL)
``peers``      minimal reference servers (asyncio / uvloop echo) run as subprocesses
``latency``    :class:`LatencyHistogram`, an HDR-like log-bucket histogram (mergeable)
``report``     :class:`BenchResult`, the ratio table (rich) and the JSON next to it
``chart``      PNG charts: a bar chart of one metric, req/s and CPU against connections
               (matplotlib, optional)
``tcp_load``   what the TCP load generators share: phases, results, processes
``echo_load``  the echo load generator (``ioreactor echo-client``) as a function
``echo_bench`` ``ioreactor bench echo`` as a function (one server after another)
``http_bench`` one HTTP server measured under keep-alive load (``bench http``, ``aio``,
               ``asgi``, ``wsgi``)
``http_comparison`` ``ioreactor bench http``: the servers, their commands, the targets
``uring_bench`` ``ioreactor bench uring``: epoll vs io_uring readiness vs completion
``idle_bench`` ``ioreactor bench idle``: RSS and Python heap per idle connection
``heap_probe`` runs an ``ioreactor`` command under tracemalloc, reports it on SIGUSR1
``heartbeat_bench`` ``ioreactor bench heartbeat``: idle heartbeating connections, frames
``cluster_load`` the cluster test's client: paced keep-alive GETs and POSTs, every
               request recorded with its times and outcome (docs/deploy.md)
``c100k``      ``ioreactor bench c100k``: 100,000 idle-then-active connections to ``serve``

See ``docs/benchmarks.md`` for the method.
"""

#: The servers a side-by-side benchmark compares: ours and the two minimal peers.
PEER_SERVERS = ("ioreactor", "asyncio", "uvloop")
