"""CPython's test_sock_lowlevel (sock_* coroutines) on ioreactor.aio."""

from cpython_support import create_loop
from test.test_asyncio import test_sock_lowlevel as stdlib
from test.test_asyncio import utils as test_utils


class IoreactorSockTests(stdlib.BaseSockTestsMixin, test_utils.TestCase):
    def create_event_loop(self):  # type: ignore[no-untyped-def]
        return create_loop()
