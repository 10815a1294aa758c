# C types for echo.py (Cython augmenting declarations; the .py is the source).

from ioreactor.loop.csysio cimport scratch_bytes
from ioreactor.net.connection cimport TcpConnection
from ioreactor.net.handlers cimport Handler

cdef class EchoHandler(Handler):
    cpdef on_read(self, conn, data)
    cpdef on_message(self, conn, buffer)
    cdef Py_ssize_t _read_scratch(self, TcpConnection conn, bytearray scratch, Py_ssize_t size) except -1
