"""The load generator's phases: a warm-up's drain deadline must not outlive its phase."""

from __future__ import annotations

from ioreactor.net.buffer import Buffer
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import Handler
from ioreactor.net.server import TcpServer
from ioreactor.testing import LoopThread
from ioreactor_tools.bench.echo_load import EchoLoadConfig, run_echo_load

DELAY = 0.5


class DelayedEcho(Handler):
    """Echoes each read DELAY seconds later, so every drain takes about DELAY."""

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        conn.loop.call_later(DELAY, conn.send, buffer.read_all())


def test_stale_warmup_drain_timer_does_not_count_final_replies_as_lost() -> None:
    # Timeline: the warm-up ends at 0.25 s with every first reply still delayed, so it
    # arms a 1.0 s drain deadline (at 1.25 s); its drain ends at 0.5 s; measuring runs to
    # 1.0 s and the final drain until about 1.5 s. A warm-up deadline left armed fires
    # inside that final drain and would count its replies as lost.
    with LoopThread() as lt:
        server = lt.call(lambda: TcpServer(lt.loop, "127.0.0.1:0", DelayedEcho()).start())
        port = lt.call(lambda: server.port)
        config = EchoLoadConfig(
            host="127.0.0.1",
            port=port,
            conns=4,
            size=64,
            warmup=DELAY / 2,
            duration=0.5,
            drain_timeout=1.0,
            seed=1,
        )
        result = run_echo_load(config)
        lt.call(server.close)
    assert result.errors == {}, result.errors
    assert result.messages > 0
