# C types for poller.py (Cython augmenting declarations; the .py is the source).

cpdef enum:  # the event bits (poller.py defines them for the pure build)
    READ = 0x001
    WRITE = 0x004
    ERROR = 0x008
    HUP = 0x010
