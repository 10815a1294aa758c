# C types for head.py (Cython augmenting declarations; the .py is the source).

from ioreactor.http.request cimport Request

cpdef bytes status_line(status)
cpdef bint has_body(int status)
cpdef bytes framing_field(int status, Py_ssize_t length, bint chunked)
cpdef bytes connection_field(Request request)
cpdef bytes encode_head(bytes line, bytes server, bytes date, bytes fields, bytes framing,
                        bytes connection)
