# C types for plain_head.py (Cython augmenting declarations; the .py is the source).

cimport cython

ctypedef const unsigned char* byte_ptr
ctypedef unsigned char uchar

cdef enum:  # (plain_head.py defines them for the pure build, as module constants)
    CR = 0x0D
    LF = 0x0A
    COLON = 0x3A
    QUESTION = 0x3F
    PERCENT = 0x25

cdef bytes TARGET_BYTES, TOKEN_BYTES, VALUE_BYTES  # (C globals: the scanner points into them)

@cython.final
cdef class HeadScanner:
    cdef public str method
    cdef public Py_ssize_t target_start, target_end, fields_start, fields_end
    cdef public Py_ssize_t max_head, max_target, max_fields
    cdef public bint escaped
    cdef byte_ptr _target_bytes, _token_bytes, _value_bytes

    @cython.locals(i=Py_ssize_t, limit=Py_ssize_t, c=uchar, escaped=bint,
                   table=byte_ptr, token=byte_ptr, value=byte_ptr, hosts=int,
                   fields=Py_ssize_t, name=Py_ssize_t, length=Py_ssize_t)
    cpdef Py_ssize_t scan(self, byte_ptr data, Py_ssize_t start, Py_ssize_t end) except -1
    cdef Py_ssize_t _method(self, byte_ptr data, Py_ssize_t start, Py_ssize_t end) except -1

@cython.locals(n=Py_ssize_t, k=Py_ssize_t)
cdef bint _starts(byte_ptr data, Py_ssize_t i, Py_ssize_t end, bytes literal) noexcept

@cython.locals(k=Py_ssize_t)
cdef bint _lower_is(byte_ptr data, Py_ssize_t i, bytes name) noexcept

cdef bint _special(byte_ptr data, Py_ssize_t i, Py_ssize_t length) noexcept
