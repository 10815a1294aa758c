"""ioreactor.aio's scheduling: callbacks, timers, threads, errors, debug, signals, executors."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time

import pytest
from aio_support import run

import ioreactor.aio
from ioreactor.aio import Loop, new_event_loop
from support.processes import as_in_a_terminal


def test_callbacks_run_in_order_and_timers_by_deadline(aio_loop: Loop) -> None:
    seen: list[str] = []
    aio_loop.call_later(0.03, seen.append, "late")
    aio_loop.call_later(0.01, seen.append, "early")
    aio_loop.call_soon(seen.append, "soon1")
    aio_loop.call_soon(seen.append, "soon2")
    aio_loop.call_later(0.05, aio_loop.stop)
    aio_loop.run_forever()
    assert seen == ["soon1", "soon2", "early", "late"]


def test_call_later_waits_at_least_its_delay(aio_loop: Loop) -> None:
    start = aio_loop.time()
    run(aio_loop, asyncio.sleep(0.05))
    assert aio_loop.time() - start >= 0.05 - 0.002


def test_cancelled_timers_never_run_and_leave_the_heap(aio_loop: Loop) -> None:
    ran: list[int] = []
    handles = [aio_loop.call_later(10 + i, ran.append, i) for i in range(300)]
    for handle in handles:
        handle.cancel()
    assert aio_loop._timer_cancelled_count == 300
    run(aio_loop, asyncio.sleep(0))
    assert aio_loop._scheduled == [] and aio_loop._timer_cancelled_count == 0
    assert ran == []


def test_call_soon_threadsafe_wakes_a_sleeping_loop(aio_loop: Loop) -> None:
    async def main() -> float:
        fut = aio_loop.create_future()
        start = time.monotonic()
        threading.Timer(0.05, aio_loop.call_soon_threadsafe, (fut.set_result, "x")).start()
        assert await fut == "x"
        return time.monotonic() - start

    assert run(aio_loop, main()) < 2.0


def test_a_raising_callback_goes_to_the_exception_handler_and_the_loop_goes_on(
    aio_loop: Loop,
) -> None:
    contexts: list[dict[str, object]] = []
    aio_loop.set_exception_handler(lambda loop, ctx: contexts.append(ctx))

    def boom() -> None:
        raise ZeroDivisionError("boom")

    aio_loop.call_soon(boom)
    assert run(aio_loop, asyncio.sleep(0.01, "still running")) == "still running"
    assert len(contexts) == 1
    assert isinstance(contexts[0]["exception"], ZeroDivisionError)


def test_default_exception_handler_logs(aio_loop: Loop, caplog: pytest.LogCaptureFixture) -> None:
    aio_loop.call_soon(lambda: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        run(aio_loop, asyncio.sleep(0))
    assert "ZeroDivisionError" in caplog.text


def test_debug_mode_warns_about_a_slow_callback_and_records_the_lag(
    aio_loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    aio_loop.set_debug(True)
    aio_loop.slow_callback_duration = 0.02
    aio_loop.call_soon(time.sleep, 0.05)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        run(aio_loop, asyncio.sleep(0.01))
    assert "took 0.0" in caplog.text and "sleep" in caplog.text
    lag = aio_loop.lag()
    assert lag.max >= 0.05 and lag.slow_iterations >= 1


def test_non_threadsafe_call_from_another_thread_raises_in_debug_mode(aio_loop: Loop) -> None:
    aio_loop.set_debug(True)
    errors: list[BaseException] = []

    def other_thread() -> None:
        try:
            aio_loop.call_soon(lambda: None)
        except RuntimeError as exc:
            errors.append(exc)

    async def main() -> None:
        thread = threading.Thread(target=other_thread)
        thread.start()
        await aio_loop.run_in_executor(None, thread.join)

    run(aio_loop, main())
    assert errors and "Non-thread-safe" in str(errors[0])


def test_executor_getaddrinfo_and_task_factory(aio_loop: Loop) -> None:
    made: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro, **kwargs):  # type: ignore[no-untyped-def]
        made.append(coro.__name__)
        return asyncio.Task(coro, loop=loop, **kwargs)

    aio_loop.set_task_factory(factory)

    async def main() -> None:
        assert await aio_loop.run_in_executor(None, sum, [1, 2, 3]) == 6
        infos = await aio_loop.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
        assert any(info[4][1] == 80 for info in infos)
        host, _ = await aio_loop.getnameinfo(("127.0.0.1", 80))
        assert host

    run(aio_loop, main())
    assert "wait_for" in made or "main" in made


def test_signal_handler_runs_on_the_loop(aio_loop: Loop) -> None:
    got: list[int] = []

    async def main() -> None:
        fut = aio_loop.create_future()
        aio_loop.add_signal_handler(signal.SIGUSR1, lambda: fut.set_result(signal.SIGUSR1))
        os.kill(os.getpid(), signal.SIGUSR1)
        got.append(await fut)
        assert aio_loop.remove_signal_handler(signal.SIGUSR1)
        assert not aio_loop.remove_signal_handler(signal.SIGUSR1)

    run(aio_loop, main())
    assert got == [signal.SIGUSR1]
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_signal_handler_checks_its_arguments(aio_loop: Loop) -> None:
    async def coro() -> None: ...

    with pytest.raises(TypeError):
        aio_loop.add_signal_handler(signal.SIGUSR1, coro)
    with pytest.raises(ValueError):
        aio_loop.add_signal_handler(-1, lambda: None)
    with pytest.raises(RuntimeError, match="cannot be caught"):
        aio_loop.add_signal_handler(signal.SIGKILL, lambda: None)


def test_run_install_and_policy_give_an_ioreactor_loop() -> None:
    async def kind() -> type:
        return type(asyncio.get_running_loop())

    assert ioreactor.aio.run(kind()) is Loop
    assert ioreactor.aio.run(kind(), poller="poll") is Loop
    old = asyncio.get_event_loop_policy()
    try:
        ioreactor.aio.install()
        assert asyncio.run(kind()) is Loop
    finally:
        asyncio.set_event_loop_policy(old)


def test_async_generators_are_finalised_by_shutdown_asyncgens() -> None:
    closed: list[bool] = []

    async def gen():  # type: ignore[no-untyped-def]
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    async def main() -> None:
        agen = gen()
        assert await agen.__anext__() == 1
        main.agen = agen  # type: ignore[attr-defined]  # kept alive past main

    ioreactor.aio.run(main())
    assert closed == [True]


def test_closed_loop_refuses_work() -> None:
    loop = new_event_loop()
    loop.close()
    loop.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon(lambda: None)
    with pytest.raises(RuntimeError, match="closed"):
        loop.run_forever()


SIGINT_PROGRAM = """
import asyncio, ioreactor.aio
async def main():
    print("ready", flush=True)
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        print("cancelled", flush=True)
        raise
try:
    ioreactor.aio.run(main())
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
"""


def test_ctrl_c_cancels_the_main_task_promptly() -> None:
    """asyncio.Runner's SIGINT handling works on the reactor: a real SIGINT to a real
    process cancels main() and ends the run with KeyboardInterrupt."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", SIGINT_PROGRAM],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=as_in_a_terminal,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
        assert time.monotonic() - start < 5
        assert out == "cancelled\nKeyboardInterrupt\n"
    finally:
        proc.kill()
        proc.wait()


def test_an_eager_task_takes_its_first_step_inside_the_call(aio_loop: Loop) -> None:
    seen: list[object] = []

    async def quick() -> str:
        seen.append(asyncio.current_task())
        return "done at once"

    async def waits() -> str:
        seen.append("before")
        await asyncio.sleep(0)
        seen.append("after")
        return "done later"

    def from_a_callback() -> None:  # as a reactor callback (a parser's read) calls it
        first = aio_loop.eager_task(quick())
        assert first.done() and first.result() == "done at once"
        assert seen == [first]  # current_task() was the Task itself
        second = aio_loop.eager_task(waits())
        assert seen[1:] == ["before"] and not second.done()
        results.append(second)

    async def from_a_task() -> None:  # inside a Task, steps never nest: ordinary
        task = aio_loop.eager_task(quick())
        assert not task.done()
        await task

    results: list[asyncio.Task[str]] = []

    async def main() -> None:
        aio_loop.call_soon(from_a_callback)
        while not results:
            await asyncio.sleep(0)
        assert await results[0] == "done later"
        await from_a_task()

    aio_loop.run_until_complete(main())
