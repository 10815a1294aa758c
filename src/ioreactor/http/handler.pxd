# C types for handler.py (Cython augmenting declarations; the .py is the source).

from ioreactor.http.protocol cimport receive, receive_read
from ioreactor.net.connection cimport TcpConnection
from ioreactor.net.handlers cimport Handler

cdef class HttpHandler(Handler):
    cdef public object dispatcher, limits, cache, _lock, observer
    cdef public dict _sweeps

    cpdef on_connection(self, conn)
    cpdef on_message(self, conn, buffer)
    cpdef on_read(self, conn, data)
    cpdef on_eof(self, conn)
    cpdef on_shutdown(self, conn)
    cpdef on_close(self, conn)
    cdef Py_ssize_t _read_scratch(self, TcpConnection conn, bytearray scratch, Py_ssize_t size) except -1
