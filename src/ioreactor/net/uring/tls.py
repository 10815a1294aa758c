"""``UringTlsConnection``: TLS (:mod:`ioreactor.net.tls`) over the io_uring connection.

::

    multishot RECV completion -> TlsStream._received (decrypt) -> on_read / on_message
    flush -> TlsStream._flush (encrypt) -> UringConnection._flush (one SEND/SENDMSG)

Every TLS step is :class:`~ioreactor.net.tls.TlsStream`'s; the I/O is
:class:`~ioreactor.net.uring.connection.UringConnection`'s. One difference: ciphertext
that completes while reading is paused goes to the session's incoming BIO (not to
``input``), and is decrypted when reading resumes (before an EOF that came meanwhile).
"""

from __future__ import annotations

from ioreactor.net.tls import TlsStream
from ioreactor.net.uring.connection import UringConnection


class UringTlsConnection(TlsStream, UringConnection):
    """A TLS connection on the io_uring completion loop."""

    __slots__ = ("_tls",)
    _flush_ciphertext = UringConnection._flush

    def _hold(self, data: memoryview) -> None:
        """Ciphertext that arrived while reading was paused waits in the BIO."""
        self._keep_ciphertext(data)

    def _release_held(self) -> None:
        """Reading resumed: decrypt what waits in the BIO."""
        self._resume_decrypt()
