"""CPython's test_sendfile (loop.sendfile, sock_sendfile) on ioreactor.aio."""

from cpython_support import create_loop
from test.test_asyncio import test_sendfile as stdlib
from test.test_asyncio import utils as test_utils


class IoreactorSendfileTests(stdlib.SendfileTestsBase, test_utils.TestCase):
    def create_event_loop(self):  # type: ignore[no-untyped-def]
        return create_loop()
