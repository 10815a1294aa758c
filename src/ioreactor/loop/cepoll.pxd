# epoll_wait for the compiled build's event loop: the ready events land in a C array
# (kept in a bytearray the loop owns) and the loop reads each fd and mask from it, with
# no list of (fd, mask) tuples and no int objects per event, where select.epoll.poll()
# builds both. The interest set is still kept through select.epoll (register, modify and
# unregister happen on transitions only). The same contract as select.epoll.poll():
# timeout None waits forever, seconds round up to whole milliseconds, the GIL is released
# while the call may block, and EINTR runs the signal handlers, then waits for the rest
# of the timeout (PEP 475). cepoll.pyi gives the Python signatures.

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport EINTR, errno
from libc.math cimport ceil
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport strerror

from ioreactor.loop.csysio cimport monotonic


cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        void* ptr
        int fd
        uint32_t u32
        uint64_t u64

    struct epoll_event:
        uint32_t events
        epoll_data_t data

    int c_epoll_wait "epoll_wait" (int epfd, epoll_event* events, int maxevents, int timeout)


cdef inline bytearray epoll_events(int n):
    """Room for ``n`` ready events."""
    return bytearray(n * sizeof(epoll_event))


cdef inline int epoll_wait(int epfd, bytearray events, object timeout) except -1:
    """Wait for ready events into ``events``; returns how many arrived."""
    cdef int ms
    cdef int n
    cdef double seconds
    cdef double deadline = 0.0
    cdef epoll_event* array = <epoll_event*>PyByteArray_AS_STRING(events)
    cdef int room = <int>(PyByteArray_GET_SIZE(events) // sizeof(epoll_event))
    if timeout is None:
        ms = -1
    else:
        seconds = <double>timeout
        ms = _milliseconds(seconds)
        deadline = monotonic() + seconds
    while True:
        # Compiled code runs no bytecode, so a signal that arrived while it ran has only
        # been noted: run its Python handler now, once an iteration (asyncio's Runner
        # cancels main() from a SIGINT handler; KeyboardInterrupt ends a lab), and before
        # sleeping. (A check of a flag when no signal came.)
        PyErr_CheckSignals()
        if ms == 0:
            n = c_epoll_wait(epfd, array, room, 0)
        else:
            with nogil:
                n = c_epoll_wait(epfd, array, room, ms)
        if n >= 0:
            return n
        if errno != EINTR:
            raise OSError(errno, strerror(errno).decode())
        PyErr_CheckSignals()  # a signal handler that raises ends the wait with its exception
        if ms > 0:
            ms = _milliseconds(deadline - monotonic())


cdef inline int _milliseconds(double seconds) noexcept:
    """A timeout in whole milliseconds, rounded up (a longer one ends early: the loop
    polls again)."""
    if seconds <= 0.0:
        return 0
    if seconds < 2_000_000.0:
        return <int>ceil(seconds * 1000.0)
    return 2_000_000_000


cdef inline int ready_fd(bytearray events, int i) noexcept:
    """The fd of the ``i``-th ready event (registered with the fd as its data)."""
    return (<epoll_event*>PyByteArray_AS_STRING(events))[i].data.fd


cdef inline int ready_mask(bytearray events, int i) noexcept:
    """The event bits of the ``i``-th ready event (EPOLLIN, EPOLLOUT...)."""
    return <int>(<epoll_event*>PyByteArray_AS_STRING(events))[i].events
