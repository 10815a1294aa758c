"""The parts of CPython's test_unix_events that apply to another loop: Unix sockets,
sock_sendfile and the functional tests (the rest tests the selector loop's classes)."""

from cpython_support import create_loop, install_policy, restore_policy
from test.test_asyncio import test_unix_events as stdlib


class IoreactorUnixSocketTests(stdlib.SelectorEventLoopUnixSocketTests):
    def setUp(self) -> None:
        super().setUp()
        self.loop = create_loop()
        self.set_event_loop(self.loop)


class IoreactorUnixSockSendfileTests(stdlib.SelectorEventLoopUnixSockSendfileTests):
    pass


class IoreactorFunctionalTests(stdlib.TestFunctional):
    pass


def setUpModule() -> None:
    install_policy()


def tearDownModule() -> None:
    restore_policy()
