# An IPv4 peer address as one C integer, for the compiled connection (connection.py):
# ("a.b.c.d", port) -- what accept() gives for an AF_INET socket -- packed as
# address << 16 | port, and the tuple made again when asked. 8 bytes in the connection
# instead of a tuple, a str and an int (142 bytes of heap). cpeer.pyi gives the Python
# signatures; the pure build keeps the peer object as it is.

from cpython.unicode cimport PyUnicode_FromFormat

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL


cdef inline long long pack_ipv4_peer(object peer) except -2:
    # -1 for anything but a tuple of a dotted quad in its canonical spelling (what
    # inet_ntoa writes: no leading zeros, no spaces) and a port: such a peer is kept as
    # the object it is, so what comes back out is always equal to what went in.
    cdef const char* text
    cdef Py_ssize_t size, i
    cdef long long address = 0, part = 0, port
    cdef int parts = 0, digits = 0
    cdef char c
    if type(peer) is not tuple or len(<tuple>peer) != 2:
        return -1
    host = (<tuple>peer)[0]
    number = (<tuple>peer)[1]
    if type(host) is not str or type(number) is not int or not 0 <= number <= 0xFFFF:
        return -1
    port = number
    text = PyUnicode_AsUTF8AndSize(host, &size)
    if size > 15:
        return -1
    for i in range(size + 1):
        c = text[i] if i < size else b"."
        if c == b".":
            if digits == 0 or parts == 4:
                return -1
            address = address << 8 | part
            parts += 1
            part = digits = 0
        elif b"0" <= c <= b"9":
            if digits and part == 0:
                return -1  # a leading zero
            part = part * 10 + (c - 48)
            digits += 1
            if part > 255:
                return -1
        else:
            return -1
    if parts != 4:
        return -1
    return address << 16 | port


cdef inline tuple unpack_ipv4_peer(long long packed):
    cdef unsigned long address = <unsigned long>(packed >> 16)
    return (
        PyUnicode_FromFormat(
            "%lu.%lu.%lu.%lu",
            address >> 24,
            (address >> 16) & 0xFF,
            (address >> 8) & 0xFF,
            address & 0xFF,
        ),
        <int>(packed & 0xFFFF),
    )
