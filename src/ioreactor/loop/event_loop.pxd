# C types for event_loop.py (Cython augmenting declarations; the .py is the source).

cdef class EventLoop:
    cdef public object poller, name, _waker, _ready, _timers, _thread_id, _lag_recent
    cdef public object _signal_wakeup
    cdef public list _second_callbacks
    cdef public double _second_ends
    cdef public bint edge_triggered, completion_mode
    cdef public bint _running, _stopping, _closed, _wake_pending
    cdef public double slow_iteration, now, _lag_max, _last_slow_log
    cdef public bytearray scratch
    cdef public object scratch_view
    cdef public list pending_flush
    cdef public dict _handlers, _pools, _signals
    cdef public set _unwatched
    cdef public Py_ssize_t _iterations, _slow_iterations
    cdef object __weakref__
