"""Fixtures of the io_uring connection and acceptor tests: ``poller_name`` / ``loop`` /
``loop_thread`` (from ``support.uring``) override the suite-wide fixtures so every test
here runs on a completion-mode loop; everything skips where io_uring is unavailable."""

from __future__ import annotations

from support.uring import loop, loop_thread, poller_name

__all__ = ["loop", "loop_thread", "poller_name"]
