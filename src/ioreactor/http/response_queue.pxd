# C types for response_queue.py (Cython augmenting declarations; the .py is the source).

from ioreactor.http.protocol cimport HttpProtocol
from ioreactor.http.request cimport Request
from ioreactor.http.response cimport ResponseCache
from ioreactor.net.connection cimport TcpConnection

cdef class Slot:
    cdef public Request request
    cdef public object result

cdef class ResponseQueue:
    cdef public HttpProtocol owner
    cdef public TcpConnection conn
    cdef public ResponseCache cache
    cdef public bint observes_every, advancing, ended
    cdef public list pending
    cdef public Slot active
    cdef public object sender, observer

    cpdef respond(self, Request request, object result)
    cpdef emit(self, bytes data)
    cpdef _send(self, bytes data)
    cpdef advance(self)
