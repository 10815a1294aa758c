"""CPython's test_ssl, run with ioreactor.aio's loop installed (the policy)."""

from cpython_support import install_policy, restore_policy
from test.test_asyncio.test_ssl import *  # noqa: F403


def setUpModule() -> None:
    install_policy()


def tearDownModule() -> None:
    restore_policy()


# Helper classes of the stdlib module, not tests (pytest would warn about collecting them).
del TestSocketWrapper, TestThreadedClient, TestThreadedServer  # noqa: F821
