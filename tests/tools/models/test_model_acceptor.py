"""The blocking models' accept loop: ``stop()`` from a signal handler always ends it.

A signal that CPython's C handler takes on another thread (or just before ``poll()``)
leaves the Python handler pending while the main thread sleeps in ``poll()``; the
acceptor's pipe is the signal wakeup fd, so ``poll()`` returns and the handler runs. Each
case runs in a fresh interpreter: the wakeup fd and the handlers are process-wide.
"""

from __future__ import annotations

import signal
import subprocess
import sys

PRELUDE = """
import signal, socket, threading, time
from ioreactor_tools.models.acceptor import StoppableAcceptor

acceptor = StoppableAcceptor()
listener = socket.create_server(("127.0.0.1", 0))
acceptor.attach(listener)

def signal_another_thread(signum):
    # The C handler runs on the thread the kernel delivers to: this one, not the main
    # thread, whose poll() is therefore not interrupted.
    time.sleep(0.2)
    signal.pthread_kill(threading.get_ident(), signum)
"""


def run_case(body: str) -> str:
    try:
        done = subprocess.run(
            [sys.executable, "-c", PRELUDE + body], capture_output=True, text=True, timeout=10
        )
    except subprocess.TimeoutExpired:
        raise AssertionError("accept() still blocked 10 s after the signal") from None
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_sigterm_taken_by_another_thread_stops_the_blocked_accept() -> None:
    out = run_case("""
signal.signal(signal.SIGTERM, lambda *_: acceptor.stop())
threading.Thread(target=signal_another_thread, args=(signal.SIGTERM,)).start()
print("accept ->", acceptor.accept())
acceptor.close()
print("wakeup fd restored:", signal.set_wakeup_fd(-1))
""")
    assert out.splitlines() == ["accept -> None", "wakeup fd restored: -1"]


def test_another_signal_wakes_the_loop_but_does_not_stop_it() -> None:
    out = run_case("""
seen = []
signal.signal(signal.SIGUSR1, lambda signum, _: seen.append(signum))
threading.Thread(target=signal_another_thread, args=(signal.SIGUSR1,)).start()

def connect_later():
    time.sleep(0.5)
    socket.create_connection(listener.getsockname()).close()

threading.Thread(target=connect_later).start()
conn = acceptor.accept()
print("accepted a connection:", conn is not None, "after signals", seen)
conn.close()
acceptor.close()
""")
    assert out.splitlines() == [f"accepted a connection: True after signals [{signal.SIGUSR1:d}]"]
