# C types for response.py (Cython augmenting declarations; the .py is the source).

from ioreactor.http.head cimport (
    connection_field,
    encode_head,
    framing_field,
    has_body,
    status_line,
)
from ioreactor.http.request cimport Request

cpdef bytes handler_head(int status, bytes fields, bytes framing, bytes connection,
                         bytes server)

cdef class Response:
    cdef public int status
    cdef public bytes body, fields
    cdef public bint close

cdef class ResponseCache:
    cdef public bytes server, _octet_prefix, _date
    cdef public tuple _text
    cdef public dict texts

    cpdef bytes text_response(self, str text)
