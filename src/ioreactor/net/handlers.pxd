# C types for handlers.py (Cython augmenting declarations; the .py is the source).
# Handler's callbacks are cpdef: the connection calls a compiled handler's methods in C,
# and a Python subclass's overrides through Python, as any method.

from ioreactor.net.connection cimport TcpConnection

cdef class Handler:
    cpdef on_connection(self, conn)
    cpdef on_message(self, conn, buffer)
    cpdef on_read(self, conn, data)
    cpdef on_write_complete(self, conn)
    cpdef on_high_water_mark(self, conn, size)
    cpdef on_eof(self, conn)
    cpdef on_shutdown(self, conn)
    cpdef on_close(self, conn)
    cdef Py_ssize_t _read_scratch(self, TcpConnection conn, bytearray scratch, Py_ssize_t size) except -1
