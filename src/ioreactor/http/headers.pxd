# C types for headers.py (Cython augmenting declarations; the .py is the source).

cdef class Headers:
    cdef public list raw
    cdef public dict _index
