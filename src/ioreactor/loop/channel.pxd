# C types for channel.py (Cython augmenting declarations; the .py is the source).
# The loop calls handle_events through the C method table: a compiled connection's own
# method directly, a Python subclass's override through Python, as any cpdef method.

cdef class Channel:
    cpdef bint handle_events(self, int mask) except -1

cdef class CallbackChannel(Channel):
    cdef public object callback

    cpdef bint handle_events(self, int mask) except -1
