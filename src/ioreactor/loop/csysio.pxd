# The system calls of the read and write paths, for the compiled build: the modules on
# the per-message path cimport these where the pure build calls the socket's methods.
# They make the same system calls directly on the fd, without the socket module's
# argument parsing and its release and re-acquisition of the GIL around a call that
# cannot block (the socket is non-blocking), and raise what the socket methods raise:
# BlockingIOError when the kernel has nothing to give or take, OSError subclasses on
# errors; EINTR is retried (PEP 475). csysio.pyi gives their Python signatures.

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.buffer cimport Py_buffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.errno cimport EAGAIN, EINTR, errno
from libc.string cimport strerror


cdef extern from "<sys/socket.h>" nogil:
    Py_ssize_t c_recv "recv" (int fd, void* buf, size_t n, int flags)
    Py_ssize_t c_send "send" (int fd, const void* buf, size_t n, int flags)
    const int MSG_NOSIGNAL


cdef inline Py_ssize_t _raise_errno(int code) except -1:
    # OSError(errno, text) is the errno's own subclass: BlockingIOError for EAGAIN,
    # ConnectionResetError for ECONNRESET, ... as the socket module raises them.
    raise OSError(code, strerror(code).decode())


cdef inline Py_ssize_t sock_recv_into(int fd, bytearray buffer) except -1:
    cdef Py_ssize_t n
    while True:
        n = c_recv(fd, PyByteArray_AS_STRING(buffer), <size_t>PyByteArray_GET_SIZE(buffer), 0)
        if n >= 0:
            return n
        if errno != EINTR:  # retried as the socket module does (PEP 475)
            return _raise_errno(errno)


cdef inline Py_ssize_t sock_send(object sock, int fd, object data) except -1:
    cdef Py_ssize_t n
    if type(data) is not bytes:
        return sock.send(data)  # a memoryview of the rest of a partly sent chunk
    while True:
        n = c_send(fd, PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data), MSG_NOSIGNAL)
        if n >= 0:
            return n
        if errno != EINTR:
            return _raise_errno(errno)


cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clock, timespec* ts)
    const int CLOCK_MONOTONIC


cdef inline double monotonic() noexcept:
    # time.monotonic() without the call through the time module: the same clock and the
    # same float (nanoseconds / 1e9, as CPython rounds them), so the two mix freely.
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>(<long long>ts.tv_sec * 1000000000 + ts.tv_nsec) / 1e9


cdef extern from "Python.h":
    unsigned long PyThread_get_thread_ident() nogil


cdef inline unsigned long get_ident() noexcept:
    # threading.get_ident() without the Python call (the same number).
    return PyThread_get_thread_ident()


cdef inline bytes scratch_bytes(bytearray scratch, Py_ssize_t size):
    # The first ``size`` bytes of a read buffer as bytes: one copy, no view.
    return PyBytes_FromStringAndSize(PyByteArray_AS_STRING(scratch), size)


cdef extern from "Python.h":
    Py_buffer* PyMemoryView_GET_BUFFER(object view)


cdef inline const unsigned char* bytes_pointer(object data) noexcept:
    # The bytes of a read, in place: ``bytes``, ``bytearray`` or a contiguous memoryview
    # of bytes (what the read path passes); NULL for anything else.
    cdef Py_buffer* view
    if type(data) is memoryview:
        view = PyMemoryView_GET_BUFFER(data)
        if view.itemsize != 1 or view.ndim != 1 or (view.strides and view.strides[0] != 1):
            return NULL
        return <const unsigned char*>view.buf
    if type(data) is bytes:
        return <const unsigned char*>PyBytes_AS_STRING(data)
    if type(data) is bytearray:
        return <const unsigned char*>PyByteArray_AS_STRING(data)
    return NULL
