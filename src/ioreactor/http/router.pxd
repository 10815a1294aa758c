# C types for router.py (Cython augmenting declarations; the .py is the source).

cdef class Router:
    cdef public dict _literal, plain
    cdef public list _patterns
