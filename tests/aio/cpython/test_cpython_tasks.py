"""CPython's test_tasks, run with ioreactor.aio's loop installed (the policy)."""

from cpython_support import install_policy, restore_policy
from test.test_asyncio.test_tasks import *  # noqa: F403


def setUpModule() -> None:
    install_policy()


def tearDownModule() -> None:
    restore_policy()
