# C types for parser.py (Cython augmenting declarations; the .py is the source).

cimport cython

from ioreactor.http.request cimport Request, incoming

cdef class End:
    cdef public Request request

cdef class RequestParser:
    cdef public list events
    cdef public ParserCallbacks callbacks
    cdef public int position
    cdef public bint careful
    cdef public object llhttp
    cdef public bytes url
    cdef public list raw
    cdef public int hosts
    cdef public Py_ssize_t requests_left, head_fed, body_size, body_fed
    cdef public object peer
    cdef public Request request
    cdef public bint upgrading
    cdef public Py_ssize_t upgraded_at

    @cython.locals(n=Py_ssize_t)
    cpdef list feed(self, data, Py_ssize_t size=*)
    cdef list _take_events(self)
    @cython.locals(targets=dict, target=str, request=Request)
    cpdef _plain(self, str method, bytes url, list fields, bint escaped=*)
    cpdef _emit(self, event)

cdef class ParserCallbacks:
    cdef public object limits
    cdef public Py_ssize_t max_request_line, max_header_bytes, max_body, max_raw_fields
    cdef public Py_ssize_t small_read
    cdef public RequestParser parser
    cdef public dict targets
    cdef public bytes recent_url
    cdef public str recent_target
    cdef public object on_url, on_header, on_headers_complete, on_body, on_message_complete

    @cython.locals(p=RequestParser, raw=list, n=Py_ssize_t)
    cpdef header(self, bytes name, bytes value)
    @cython.locals(p=RequestParser, raw=list, url=bytes, method_raw=bytes, method=str,
                   target=str, left=Py_ssize_t, request=Request, events=list)
    cpdef headers_complete(self)

cdef dict _PLAIN_METHODS
cdef frozenset _SPECIAL_LENGTHS
cdef bytes _SPECIAL_INITIALS
cdef object _get_method, _should_keep_alive
cdef str GET

cpdef enum:  # (parser.py defines them for the pure build)
    IDLE = 0
    HEAD = 1
    BODY = 2
    STOPPED = 3
