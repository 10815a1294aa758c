"""The command each ``ioreactor bench`` comparison prints and saves with its results
reruns it: parsed again, it gives the same configuration (every option set off its
default, so an option the command leaves out shows)."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable
from typing import Any

import pytest

from ioreactor.cli import build_parser
from ioreactor_tools.bench.aio_bench import AioBenchConfig
from ioreactor_tools.bench.asgi_bench import AsgiBenchConfig
from ioreactor_tools.bench.echo_bench import EchoBenchConfig
from ioreactor_tools.bench.tls_bench import TlsBenchConfig
from ioreactor_tools.bench.uring_bench import UringBenchConfig
from ioreactor_tools.cli.bench import aio, asgi, echo, http, tls, uring
from ioreactor_tools.cli.bench._args import config_from_args

WINDOW = ["--conns", "10,20", "--duration", "0.5", "--warmup", "0.25", "--rounds", "3"]

#: argv after ``bench``, the configuration class, and the command's rerun line from that
#: configuration.
COMPARISONS: dict[str, tuple[list[str], type[Any], Callable[[Any], str]]] = {
    "echo": (
        ["--size", "64", "--pipeline", "2", "--poller", "poll", "--servers", "asyncio"],
        EchoBenchConfig,
        echo.reproduce_command,
    ),
    "http": (
        ["--pipeline", "4", "--load", "ioreactor", "--poller", "poll", "--servers", "nginx"],
        http.HttpBenchConfig,
        lambda config: http.reproduce_command(config, config.load),
    ),
    "aio": (
        ["--workloads", "streams-echo", "--size", "64", "--loops", "asyncio", "--poller", "poll"],
        AioBenchConfig,
        aio.reproduce_command,
    ),
    "asgi": (
        ["--workloads", "hello", "--size", "64", "--servers", "uvicorn", "--load", "ioreactor"],
        AsgiBenchConfig,
        asgi.reproduce_command,
    ),
    "tls": (
        [
            "--workloads",
            "bulk",
            "--handshake-clients",
            "2",
            "--bulk-mib",
            "8",
            "--servers",
            "nginx",
            "--poller",
            "poll",
        ],
        TlsBenchConfig,
        tls.reproduce_command,
    ),
    "uring": (
        ["--size", "64", "--backends", "epoll,uring", "--workloads", "http", "--idle", "5"],
        UringBenchConfig,
        uring.reproduce_command,
    ),
}


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser(argv).parse_args(argv)


@pytest.mark.parametrize("name", COMPARISONS)
def test_the_saved_command_parses_back_to_the_same_configuration(name: str) -> None:
    options, config_class, reproduce = COMPARISONS[name]
    args = _parse(["bench", name, *WINDOW, *options])
    config = config_from_args(config_class, args)
    command = shlex.split(reproduce(config))
    assert command[:3] == ["ioreactor", "bench", name]
    again = _parse(command[1:])
    assert config_from_args(config_class, again) == config
