# C types for connection.py (Cython augmenting declarations; the .py is the source).

from ioreactor.loop.channel cimport Channel
from ioreactor.loop.csysio cimport get_ident, sock_recv_into, sock_send
from ioreactor.loop.event_loop cimport EventLoop
from ioreactor.loop.poller cimport ERROR, HUP, READ, WRITE
from ioreactor.net.buffer cimport Buffer
from ioreactor.net.cpeer cimport pack_ipv4_peer, unpack_ipv4_peer
from ioreactor.net.handlers cimport Handler

cimport cython

cdef bint COMPILED

cpdef enum:  # the connection's states (connection.py defines them for the pure build)
    CONNECTED = 1
    DISCONNECTING = 2
    DISCONNECTED = 3
cdef object SOCKET

cdef class TcpConnection(Channel):
    cdef public EventLoop loop
    cdef public object sock, _peer, context, error, close_timeout
    cdef public object _owner, _close_timer
    cdef public Handler _handler
    cdef public int fd, _state, _events
    cdef public Buffer _input
    # The peer ("a.b.c.d", port) packed (cpeer.pxd); -1: the peer is the object in _peer.
    cdef public long long _peer_ipv4
    cdef public list _out
    cdef public Py_ssize_t _out_size, _high_water, _low_water
    cdef public bint _flush_queued, _in_read, _writing, _above_high, _read_paused
    cdef public bint _close_after_drain, _shutdown_requested, _shut_wr, _peer_eof
    cdef public bint _direct, _scratch, _notify_drain
    cdef public double last_read, last_write

    cpdef bint handle_events(self, int mask) except -1
    @cython.locals(n=Py_ssize_t, used=Py_ssize_t, buffer=Buffer)
    cpdef bint _received(self, object data) except -1
    @cython.locals(used=Py_ssize_t)
    cdef bint _received_scratch(self, Py_ssize_t size) except -1
    cdef Buffer _keep_input(self, data)
    cpdef bint _deliver(self, Buffer buffer) except -1
    @cython.locals(sent=Py_ssize_t)
    cpdef _flush(self)
    cpdef _set_events(self, int events)
    cpdef send(self, data)
