# C types for event_loop.py (Cython augmenting declarations; the .py is the source).

from ioreactor.loop.cepoll cimport epoll_events, epoll_wait, ready_fd, ready_mask
from ioreactor.loop.channel cimport Channel
from ioreactor.loop.csysio cimport get_ident, monotonic

cimport cython

cdef bint COMPILED

cdef class EventLoop:
    cdef public object poller, name, _waker, _ready, _timers, _lag_recent
    cdef public unsigned long _thread_id
    cdef public object _signal_wakeup
    cdef public list _second_callbacks
    cdef public double _second_ends
    cdef public bint edge_triggered, completion_mode
    cdef public bint _running, _stopping, _closed, _wake_pending
    cdef public double slow_iteration, now, _lag_max, _last_slow_log
    cdef public bytearray scratch
    cdef public object scratch_view
    cdef public list pending_flush
    cdef public list _handlers
    cdef public Py_ssize_t _watched
    cdef public int _epoll_fd
    cdef public bytearray _epoll_ready
    cdef public dict _pools, _signals
    cdef public set _unwatched
    cdef public Py_ssize_t _iterations, _slow_iterations
    cdef object __weakref__

    @cython.locals(channel=Channel)
    cdef inline void _dispatch(self, int fd, int mask)
