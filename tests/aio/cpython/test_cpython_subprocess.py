"""CPython's test_subprocess on ioreactor.aio (children watched through pidfds)."""

from cpython_support import create_loop
from test.test_asyncio import test_subprocess as stdlib
from test.test_asyncio import utils as test_utils


class IoreactorSubprocessTests(stdlib.SubprocessMixin, test_utils.TestCase):
    def setUp(self) -> None:
        super().setUp()
        self.loop = create_loop()
        self.set_event_loop(self.loop)
