"""CPython's test_sslproto (start_tls and the SSL protocol) on ioreactor.aio."""

import unittest

from cpython_support import create_loop, install_policy, restore_policy
from test.test_asyncio import test_sslproto as stdlib


class IoreactorStartTLSTests(stdlib.BaseStartTLS, unittest.TestCase):
    def new_loop(self):  # type: ignore[no-untyped-def]
        return create_loop()


class IoreactorSslProtoHandshakeTests(stdlib.SslProtoHandshakeTests):
    pass


def setUpModule() -> None:
    install_policy()


def tearDownModule() -> None:
    restore_policy()
