# C types for dispatch.py (Cython augmenting declarations; the .py is the source).

cimport cython

from ioreactor.http.request cimport Request
from ioreactor.http.router cimport Router

cdef class Dispatcher:
    cpdef request(self, protocol, Request request)
    cpdef body(self, protocol, bytes chunk)
    cpdef end(self, protocol, Request request)

cdef class AppDispatcher(Dispatcher):
    cdef public object app
    cdef public Router router
    cdef public str server_name
    cdef public dict plain

    @cython.locals(handlers=dict)
    cpdef request(self, protocol, Request request)
    cpdef body(self, protocol, bytes chunk)
    cpdef end(self, protocol, Request request)

cdef class WrappingDispatcher(Dispatcher):
    cdef public Dispatcher inner
    cdef public str server_name

    cpdef request(self, protocol, Request request)
    cpdef body(self, protocol, bytes chunk)
    cpdef end(self, protocol, Request request)
