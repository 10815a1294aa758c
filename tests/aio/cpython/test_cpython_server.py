"""CPython's test_server (start_server, start_unix_server) on ioreactor.aio."""

import unittest

from cpython_support import create_loop
from test.test_asyncio import test_server as stdlib


class IoreactorStartServerTests(stdlib.BaseStartServer, unittest.TestCase):
    def new_loop(self):  # type: ignore[no-untyped-def]
        return create_loop()

    test_start_unix_server_1 = stdlib.SelectorStartServerTests.test_start_unix_server_1
