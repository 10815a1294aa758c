"""The TLS flags of the server commands (``serve``, ``echo``, ``heartbeat serve``) and of
``heartbeat connect``.

::

    --certfile --keyfile [--ca-certs --client-cert optional|required] [--sni NAME=CERT[,KEY]]
    [--handshake-timeout S]
        -> TlsFiles (paths) -> TcpServer(ssl=files.server_context, ...) in each serving
           process (a worker loads its own context)

The files are checked while parsing (they exist); the whole configuration is loaded once
before anything is served, so a key that does not match its certificate is one line
and exit status 2, not a worker that dies at start.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NoReturn

from ioreactor.cli.arguments import CommandError, readable_file, seconds
from ioreactor.net.tls import HANDSHAKE_TIMEOUT
from ioreactor.net.tls_context import CLIENT_CERT_MODES, SniCertificate, TlsFiles


def sni_certificate(text: str) -> SniCertificate:
    """``NAME=CERT[,KEY]``: the certificate served to clients asking for NAME."""
    name, sep, files = text.partition("=")
    if not sep or not name or not files:
        raise argparse.ArgumentTypeError(f"expected NAME=CERT[,KEY], got {text!r}")
    cert, _, key = files.partition(",")
    return SniCertificate(name, readable_file(cert), readable_file(key) if key else None)


def _file_argument(group: argparse._ArgumentGroup, flag: str, help: str) -> None:
    """A ``FILE`` option that must name a readable file (default: not given)."""
    group.add_argument(flag, type=readable_file, default=None, metavar="FILE", help=help)


def add_tls_arguments(p: argparse.ArgumentParser, *, server: bool = True) -> None:
    """Add the TLS flags of a server (``server=True``) or of a client."""
    group = p.add_argument_group("TLS")
    if server:
        _file_argument(
            group, "--certfile", "serve TLS with this certificate chain (PEM; may hold the key too)"
        )
        _file_argument(group, "--keyfile", "its key (PEM)")
        _file_argument(
            group, "--ca-certs", "CA bundle that client certificates must chain to (mutual TLS)"
        )
        group.add_argument(
            "--client-cert",
            choices=[m for m in CLIENT_CERT_MODES if m != "none"],
            default=None,
            help="ask clients for a certificate: verify it when sent, or require it",
        )
        group.add_argument(
            "--sni",
            type=sni_certificate,
            action="append",
            default=[],
            metavar="NAME=CERT[,KEY]",
            help="serve another certificate to clients asking for NAME (*.domain "
            "allowed; repeatable)",
        )
    else:
        _file_argument(
            group, "--ca-certs", "speak TLS, trusting this CA bundle for the server's certificate"
        )
        _file_argument(
            group, "--certfile", "client certificate (PEM) for servers that ask (mutual TLS)"
        )
        _file_argument(group, "--keyfile", "its key (PEM)")
    group.add_argument(
        "--handshake-timeout",
        type=seconds,
        default=HANDSHAKE_TIMEOUT,
        metavar="S",
        help="seconds a TLS handshake may take (default %(default)s)",
    )


def tls_server_options(
    args: argparse.Namespace, *, alpn: Sequence[str] = (), plaintext_reply: bytes | None = None
) -> dict[str, Any]:
    """The TLS keyword arguments of ``run_server``/``TcpServer`` from the flags (empty
    without ``--certfile``); refuses a configuration that does not load (exit 2)."""
    if args.certfile is None:
        given = [
            flag
            for flag, value in (
                ("--keyfile", args.keyfile),
                ("--ca-certs", args.ca_certs),
                ("--client-cert", args.client_cert),
                ("--sni", args.sni),
            )
            if value
        ]
        if given:
            _refuse(f"{', '.join(given)} need(s) --certfile")
        return {}
    if args.client_cert is not None and args.ca_certs is None:
        _refuse("--client-cert needs --ca-certs (the CA client certificates chain to)")
    files = TlsFiles(
        certfile=args.certfile,
        keyfile=args.keyfile,
        ca_certs=args.ca_certs,
        client_cert=args.client_cert or "none",
        sni=tuple(args.sni),
        alpn=tuple(alpn),
    )
    try:
        files.server_context()  # once here, to refuse it before anything starts
    except (OSError, ValueError) as exc:
        _refuse(f"TLS: {exc.args[-1] if exc.args else exc}")
    return {
        "ssl": files.server_context,
        "ssl_handshake_timeout": args.handshake_timeout,
        "ssl_plaintext_reply": plaintext_reply,
    }


def tls_client_options(args: argparse.Namespace) -> dict[str, Any]:
    """The TLS keyword arguments of ``TcpClient`` (empty without ``--ca-certs``)."""
    if args.ca_certs is None:
        if args.certfile or args.keyfile:
            _refuse("--certfile/--keyfile need --ca-certs (the server's CA)")
        return {}
    files = TlsFiles(certfile=args.certfile, keyfile=args.keyfile, ca_certs=args.ca_certs)
    try:
        context = files.client_context()
    except (OSError, ValueError) as exc:
        _refuse(f"TLS: {exc}")
    return {"ssl": context, "ssl_handshake_timeout": args.handshake_timeout}


def _refuse(message: str) -> NoReturn:
    raise CommandError(message)
