"""TimingWheel on a hand-driven clock, and once on a real loop."""

from __future__ import annotations

import logging

import pytest

from ioreactor.loop.event_loop import EventLoop
from ioreactor.loop.timing_wheel import PerLoopWheels, TimingWheel, WheelEntry


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []

    def __call__(self, name: str, now: float) -> None:
        self.calls.append((name, now))


def manual_wheel(tick: float = 1.0, slots: int = 8) -> TimingWheel:
    return TimingWheel(None, tick=tick, slots=slots, clock=lambda: 0.0)


def test_entry_fires_at_the_first_tick_at_or_after_its_deadline() -> None:
    wheel, rec = manual_wheel(), Recorder()
    wheel.schedule(2.5, rec, "a")
    wheel.schedule(3.0, rec, "b")
    assert wheel.advance(2.9) == 0  # tick 2 has come, 2.5 is not due before tick 3
    assert wheel.advance(3.0) == 2
    assert rec.calls == [("b", 3.0), ("a", 3.0)] or rec.calls == [("a", 3.0), ("b", 3.0)]
    assert len(wheel) == 0


def test_never_early_even_when_advanced_mid_tick() -> None:
    wheel, rec = manual_wheel(tick=0.5), Recorder()
    wheel.schedule(1.2, rec, "x")
    for now in (0.4, 0.9, 1.1, 1.19):
        wheel.advance(now)
        assert rec.calls == []
    wheel.advance(1.49)
    assert rec.calls == []
    wheel.advance(1.5)
    assert rec.calls == [("x", 1.5)]


def test_past_deadline_fires_on_the_next_tick() -> None:
    wheel, rec = manual_wheel(), Recorder()
    wheel.advance(5.0)
    wheel.schedule(1.0, rec, "late")
    wheel.advance(5.5)
    assert rec.calls == []
    wheel.advance(6.0)
    assert rec.calls == [("late", 6.0)]


def test_cancel_and_reschedule() -> None:
    wheel, rec = manual_wheel(), Recorder()
    a = wheel.schedule(2.0, rec, "a")
    b = wheel.schedule(2.0, rec, "b")
    wheel.cancel(a)
    wheel.cancel(a)  # twice is harmless
    assert not a.scheduled and b.scheduled and len(wheel) == 1
    wheel.reschedule(b, 4.0)
    wheel.advance(3.0)
    assert rec.calls == []
    wheel.advance(4.0)
    assert rec.calls == [("b", 4.0)]
    wheel.reschedule(a, 5.0)  # a cancelled or fired entry can be scheduled again
    wheel.advance(5.0)
    assert rec.calls[-1] == ("a", 5.0)


@pytest.mark.parametrize("order", [("a", "b", "moved"), ("moved", "b", "a")])
def test_callback_may_cancel_or_move_entries_of_the_same_slot(order: tuple[str, ...]) -> None:
    # Slot order is unspecified; one of the two orders has "a" or "b" run first.
    wheel = manual_wheel()
    calls: list[tuple[str, float]] = []
    entries: dict[str, WheelEntry[str]] = {}

    def first_one_wins(name: str, now: float) -> None:
        calls.append((name, now))
        for other, entry in entries.items():
            if other != name and entry.scheduled:
                if other == "moved":
                    wheel.reschedule(entry, 7.0)
                else:
                    wheel.cancel(entry)

    for name in order:
        entries[name] = wheel.schedule(2.0, first_one_wins, name)
    wheel.advance(2.0)
    assert len(calls) == 1  # whichever ran first cancelled or moved the others
    wheel.advance(6.0)
    assert len(calls) == 1
    wheel.advance(7.0)
    if calls[0][0] != "moved":
        assert calls[1:] == [("moved", 7.0)]
    assert len(wheel) == 0


def test_deadline_beyond_one_revolution_keeps_its_time() -> None:
    wheel, rec = manual_wheel(tick=1.0, slots=4), Recorder()
    wheel.schedule(10.0, rec, "far")  # slot 10 % 4 == 2, passed at ticks 2 and 6 first
    for now in range(1, 10):
        wheel.advance(float(now))
        assert rec.calls == [], f"fired early at {now}"
    wheel.advance(10.0)
    assert rec.calls == [("far", 10.0)]


def test_stall_longer_than_a_revolution_visits_each_slot_once() -> None:
    wheel, rec = manual_wheel(tick=1.0, slots=4), Recorder()
    for i in range(1, 9):
        wheel.schedule(float(i), rec, str(i))
    wheel.schedule(30.0, rec, "later")
    assert wheel.advance(25.0) == 8  # all eight due ones, once each
    assert sorted(name for name, _ in rec.calls) == sorted(str(i) for i in range(1, 9))
    assert len(wheel) == 1
    wheel.advance(30.0)
    assert rec.calls[-1] == ("later", 30.0)


def test_periodic_reschedule_from_the_callback() -> None:
    wheel = manual_wheel(tick=0.25)
    times: list[float] = []

    def again(entry_box: list[WheelEntry[None]], now: float) -> None:
        times.append(now)
        wheel.reschedule(entry_box[0], now + 1.0)

    box: list[WheelEntry[None]] = []
    box.append(wheel.schedule(1.0, lambda _arg, now: again(box, now), None))
    t = 0.0
    while t < 4.01:
        wheel.advance(t)
        t += 0.25
    assert times == [1.0, 2.0, 3.0, 4.0]


def test_failing_callback_is_logged_and_the_rest_still_fire(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wheel, rec = manual_wheel(), Recorder()

    def boom(_arg: str, _now: float) -> None:
        raise RuntimeError("boom")

    wheel.schedule(1.0, boom, "x")
    wheel.schedule(1.0, rec, "ok")
    with caplog.at_level(logging.ERROR, logger="ioreactor.loop"):
        assert wheel.advance(1.0) == 2
    assert rec.calls == [("ok", 1.0)]
    assert "boom" in caplog.text


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError):
        TimingWheel(None, tick=0)
    with pytest.raises(ValueError):
        TimingWheel(None, slots=0)


def test_loop_timer_runs_only_while_entries_exist() -> None:
    loop = EventLoop(name="wheel")
    try:
        wheel = PerLoopWheels(tick=0.01, slots=64).for_loop(loop)
        assert PerLoopWheels().for_loop(loop) is not wheel
        assert not wheel.running
        fired: list[float] = []
        when = loop.time() + 0.05
        wheel.schedule(when, lambda _arg, now: fired.append(now), None)
        assert wheel.running
        deadline = loop.time() + 10
        while not fired and loop.time() < deadline:
            loop.run_once(0.05)
        assert fired and fired[0] >= when
        assert not wheel.running  # empty again: no timer, the loop may sleep
        entry = wheel.schedule(loop.time() + 5, lambda _arg, _now: None, None)
        assert wheel.running
        wheel.cancel(entry)
        assert not wheel.running
    finally:
        loop.close()
