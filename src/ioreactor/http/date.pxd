# C types for date.py (Cython augmenting declarations; the .py is the source).

cdef class DateCache:
    cdef public long long _second
    cdef public bytes line
