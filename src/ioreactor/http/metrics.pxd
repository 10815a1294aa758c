# C types for metrics.py (Cython augmenting declarations; the .py is the source).
# A request's recording is C: the counters are typed memoryviews over the arrays of
# 64-bit integers, the sums C numbers, the clock the loop's C one.

cimport cython

from ioreactor.http.dispatch cimport Dispatcher, WrappingDispatcher
from ioreactor.http.protocol cimport HttpProtocol
from ioreactor.http.request cimport Request
from ioreactor.loop.csysio cimport monotonic

cdef dict _METHOD_INDEX, _TEXT_SLOT
cdef Py_ssize_t _OTHER, _OTHER_TEXT_SLOT, _HEAD_TEXT_SLOT
cdef double _FIRST_BOUND
cdef double[::1] _BOUNDS

@cython.locals(low=Py_ssize_t, high=Py_ssize_t, middle=Py_ssize_t)
cdef Py_ssize_t _bucket(double seconds)

cdef Py_ssize_t _text_size(str text) except -1

cdef class HttpMetrics:
    cdef public long long requests, request_body_bytes, response_body_bytes
    cdef public long long backpressure_pauses
    cdef public double duration_sum
    cdef public long long[::1] responses, buckets
    cdef public dict timeouts, started

    @cython.locals(cls=Py_ssize_t)
    cpdef record(self, str method, object result, double seconds)
    @cython.locals(cls=Py_ssize_t)
    cpdef record_status(self, str method, long status, Py_ssize_t size, double seconds)

cdef class CountingDispatcher(WrappingDispatcher):
    cdef public HttpMetrics metrics

    cpdef request(self, protocol, Request request)

cdef class ObservingDispatcher(WrappingDispatcher):
    cdef public HttpMetrics metrics

    @cython.locals(owner=HttpProtocol, start=double, seconds=double, metrics=HttpMetrics,
                   slot=Py_ssize_t, text=str)
    cpdef request(self, protocol, Request request)
    cpdef body(self, protocol, bytes chunk)
    @cython.locals(owner=HttpProtocol, start=double)
    cpdef end(self, protocol, Request request)
