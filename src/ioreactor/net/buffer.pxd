# C types for buffer.py (Cython augmenting declarations; the .py is the source).

cdef class Buffer:
    cdef public bytearray _data
    cdef public Py_ssize_t _r
    cdef public Py_ssize_t _w

    cpdef bint is_empty(self)
    cpdef retrieve(self, Py_ssize_t n)
    cpdef retrieve_all(self)
    cpdef bytes read(self, Py_ssize_t n)
    cpdef bytes read_all(self)
    cpdef append(self, data)
    cpdef append_received(self, data)
    cpdef release(self)
    cpdef detach(self)
    cpdef _compact(self)
