# C types for protocol.py (Cython augmenting declarations; the .py is the source).

cimport cython

from ioreactor.http.dispatch cimport Dispatcher
from ioreactor.http.parser cimport End, RequestParser
from ioreactor.http.request cimport Request
from ioreactor.http.response cimport ResponseCache
from ioreactor.http.response_queue cimport ResponseQueue
from ioreactor.loop.event_loop cimport EventLoop
from ioreactor.net.buffer cimport Buffer
from ioreactor.net.connection cimport TcpConnection

cdef class HttpProtocol:
    cdef public int phase
    cdef public bint paused
    cdef public RequestParser parser
    cdef public list batch
    cdef public Dispatcher dispatcher
    cdef public bint direct
    cdef public ResponseCache cache
    cdef public ResponseQueue queue
    cdef public double since
    cdef public EventLoop loop
    cdef public TcpConnection conn
    cdef public object context, limits, sweep, successor
    cdef public double stall_mark, stall_since, resume_delay
    cdef public bint eof_held

    cpdef _event(self, event)
    cpdef _settle(self)
    cpdef fail(self, err)
    cpdef finish(self)
    cpdef room(self)

@cython.locals(protocol=HttpProtocol)
cpdef receive(handler, TcpConnection conn, Buffer buffer)

@cython.locals(protocol=HttpProtocol, parser=RequestParser, n=Py_ssize_t, batch=list,
               dispatcher=Dispatcher, event=object, request=Request, cache=ResponseCache,
               events=list)
cpdef Py_ssize_t receive_read(handler, TcpConnection conn, data, Py_ssize_t size=*) except -1

cpdef enum:  # (protocol.py defines them for the pure build)
    IDLE = 0
    HEADERS = 1
    BODY = 2
    DONE = 3
    LINGER = 4
