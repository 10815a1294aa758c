# C types for request.py (Cython augmenting declarations; the .py is the source).

cimport cython

cdef class Request:
    cdef public object method, target, path, query, version, body, peer, params
    cdef public object _headers
    cdef public bint keep_alive

@cython.locals(request=Request)
cpdef Request incoming(str method, str target, str path, str query, list fields, peer, str version=*)
