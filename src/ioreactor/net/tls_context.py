"""TLS contexts from certificate files, with the framework's defaults.

::

    TlsFiles (paths, frozen) --server_context()--> ssl.SSLContext --> TcpServer(ssl=...)
             (built in each process that serves: a worker loads its own)

Defaults: TLS 1.2 at least, renegotiation refused, OpenSSL's ciphers (TLS 1.3 and
ECDHE for 1.2), session tickets on (resumption). ``client_cert`` asks for mutual TLS:
``"optional"`` verifies a certificate the client sends, ``"required"`` refuses a client
without one; both need ``ca_certs``, the CA bundle client certificates must chain to.
SNI: :func:`use_sni` gives a context a callback that picks another context (another
certificate) by the name the client asks for; ``TlsFiles.sni`` does that from files.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

ClientCert = Literal["none", "optional", "required"]
#: ``--client-cert`` choices: mutual TLS off, verified when sent, or required.
CLIENT_CERT_MODES: tuple[ClientCert, ...] = ("none", "optional", "required")
_VERIFY_MODES = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}


def server_context(
    certfile: str,
    keyfile: str | None = None,
    *,
    ca_certs: str | None = None,
    client_cert: ClientCert = "none",
    alpn: Sequence[str] = (),
) -> ssl.SSLContext:
    """A server context with the certificate chain ``certfile`` (and its key, when not
    in the same file). ``client_cert``/``ca_certs``: mutual TLS. ``alpn``: protocols
    offered, in order of preference (``["http/1.1"]``)."""
    if client_cert not in _VERIFY_MODES:
        raise ValueError(f"client_cert must be one of {', '.join(CLIENT_CERT_MODES)}")
    if client_cert != "none" and ca_certs is None:
        raise ValueError(f"client_cert={client_cert!r} needs ca_certs (the clients' CA)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _defaults(context, alpn)
    context.load_cert_chain(certfile, keyfile)
    if ca_certs is not None:
        context.load_verify_locations(cafile=ca_certs)
    context.verify_mode = _VERIFY_MODES[client_cert]
    return context


def client_context(
    ca_certs: str | None = None,
    *,
    certfile: str | None = None,
    keyfile: str | None = None,
    alpn: Sequence[str] = (),
) -> ssl.SSLContext:
    """A client context that verifies the server against ``ca_certs`` (None: the
    system's trust store) and its hostname; ``certfile``/``keyfile``: the client's own
    certificate, for servers that ask (mutual TLS)."""
    context = ssl.create_default_context(cafile=ca_certs)
    _defaults(context, alpn)
    if certfile is not None:
        context.load_cert_chain(certfile, keyfile)
    return context


def _defaults(context: ssl.SSLContext, alpn: Sequence[str]) -> None:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION
    if alpn:
        context.set_alpn_protocols(list(alpn))


def use_sni(context: ssl.SSLContext, by_name: Mapping[str, ssl.SSLContext]) -> None:
    """Serve the context of the name a client asks for (SNI): an exact name, else a
    ``*.domain`` wildcard one level up; any other name (or none) keeps ``context``.

    Give every context the same verification and ALPN settings: the name is chosen
    before those apply.
    """
    names = {name.lower(): chosen for name, chosen in by_name.items()}

    def pick(sslobj: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        if not server_name:
            return
        name = server_name.lower()
        chosen = names.get(name)
        if chosen is None and "." in name:
            chosen = names.get("*." + name.split(".", 1)[1])
        if chosen is not None:
            sslobj.context = chosen

    context.sni_callback = pick


@dataclass(frozen=True)
class SniCertificate:
    """One ``--sni name=cert[,key]``: the certificate served to clients asking for ``name``."""

    name: str
    certfile: str
    keyfile: str | None = None


@dataclass(frozen=True)
class TlsFiles:
    """Where a server's (or client's) certificates are: what a worker process loads.

    Frozen and made of paths, so a supervisor can describe TLS before it forks and each
    worker builds its own context (:meth:`server_context`) -- a worker restarted after
    the files were renewed serves the new certificate.
    """

    certfile: str | None = None
    keyfile: str | None = None
    ca_certs: str | None = None
    client_cert: ClientCert = "none"
    sni: tuple[SniCertificate, ...] = ()
    alpn: tuple[str, ...] = ()

    def server_context(self) -> ssl.SSLContext:
        """Load the files into a server context (raises ``OSError``/``ssl.SSLError``
        naming what is wrong)."""
        if self.certfile is None:
            raise ValueError("a TLS server needs a certificate (certfile)")
        context = self._server(self.certfile, self.keyfile)
        if self.sni:
            by_name = {sni.name: self._server(sni.certfile, sni.keyfile) for sni in self.sni}
            use_sni(context, by_name)
        return context

    def _server(self, certfile: str, keyfile: str | None) -> ssl.SSLContext:
        try:
            return server_context(
                certfile,
                keyfile,
                ca_certs=self.ca_certs,
                client_cert=self.client_cert,
                alpn=self.alpn,
            )
        except OSError as exc:  # ssl.SSLError too; neither names the file
            files = certfile if keyfile is None else f"{certfile} (key {keyfile})"
            raise OSError(exc.errno, f"{files}: {_why(exc)}") from None

    def client_context(self) -> ssl.SSLContext:
        """A client context: trust ``ca_certs`` (or the system's), present ``certfile``."""
        return client_context(
            self.ca_certs, certfile=self.certfile, keyfile=self.keyfile, alpn=self.alpn
        )


def _why(exc: OSError) -> str:
    reason = getattr(exc, "reason", None)  # an SSLError's, e.g. KEY_VALUES_MISMATCH
    if reason:
        return str(reason).replace("_", " ").lower()
    if "PEM lib" in str(exc):  # OpenSSL found no certificate (or key) in the file
        return "no PEM certificate and key found"
    return exc.strerror or str(exc)
