"""CPython's test_events on ioreactor.aio, as the stdlib runs it for each selector."""

from cpython_support import create_loop
from test.test_asyncio import test_events as stdlib
from test.test_asyncio import utils as test_utils


class IoreactorEventLoopTests(
    stdlib.UnixEventLoopTestsMixin, stdlib.SubprocessTestsMixin, test_utils.TestCase
):
    def create_event_loop(self):  # type: ignore[no-untyped-def]
        return create_loop()
