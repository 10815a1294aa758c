"""Static files under a directory, sent zero-copy, with single byte ranges.

No request may reach outside the directory: the requested path is percent-decoded (by
the request), joined to the root, resolved with every symlink followed
(``os.path.realpath``) and must still lie under the resolved root; the final open uses
``O_NOFOLLOW`` so a last component swapped for a symlink after the check is refused too.
Only regular files are served; anything else is 404, as is any path that escapes.
"""

from __future__ import annotations

import mimetypes
import os
import re
import stat
from email.utils import formatdate

from ioreactor.http.request import Request
from ioreactor.http.response import OCTET_STREAM, FileResponse, Response

#: Positions of at most 19 digits (any file offset fits): a longer number is ignored, as
#: an unsupported Range is, rather than handed to int() (4,300 digits raise ValueError).
_RANGE = re.compile(r"\s*bytes\s*=\s*([0-9]{0,19})\s*-\s*([0-9]{0,19})\s*\Z", re.IGNORECASE)


def parse_range(value: str, size: int) -> tuple[int, int] | bool | None:
    """One ``Range: bytes=...`` against a file of ``size`` bytes.

    Returns ``(first, last)`` (inclusive) for a satisfiable range, ``False`` when the range
    is unsatisfiable (416), and ``None`` when the header is to be ignored (the whole file
    is sent): a syntax we do not serve, such as several ranges, or an invalid one.
    """
    match = _RANGE.match(value)
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            return False
        return max(0, size - suffix), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        return False
    return start, min(end, size - 1)


class StaticFiles:
    """A handler serving files under ``directory`` for a route with a ``{path:path}``."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        root = os.path.realpath(directory)
        if not os.path.isdir(root):
            raise NotADirectoryError(f"static directory {directory!r} is not a directory")
        self.root = root

    def resolve(self, relative: str) -> str | None:
        """The real path of ``relative`` under the root, or None if it would leave it."""
        if "\0" in relative:
            return None
        candidate = os.path.realpath(os.path.join(self.root, relative.lstrip("/")))
        if candidate == self.root or candidate.startswith(self.root + os.sep):
            return candidate
        return None

    def __call__(self, request: Request) -> Response | FileResponse:
        path = self.resolve(request.params.get("path", ""))
        if path is None:
            return Response("404 Not Found\n", 404)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            return Response("404 Not Found\n", 404)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                os.close(fd)
                return Response("404 Not Found\n", 404)
            return self._respond(request, fd, info.st_size, info.st_mtime, path)
        except BaseException:
            os.close(fd)
            raise

    def _respond(
        self, request: Request, fd: int, size: int, mtime: float, path: str
    ) -> Response | FileResponse:
        content_type = mimetypes.guess_type(path)[0] or OCTET_STREAM
        last_modified = formatdate(mtime, usegmt=True)
        headers = [("Accept-Ranges", "bytes"), ("Last-Modified", last_modified)]
        wanted = request.headers.get("range")
        span = parse_range(wanted, size) if wanted is not None else None
        if_range = request.headers.get("if-range")
        if span is not None and if_range is not None and if_range.strip() != last_modified:
            # RFC 9110 13.1.5: the client's copy is of another version (or names an entity
            # tag, which we never send): the whole file, not a slice of the new one.
            span = None
        if span is False:
            os.close(fd)
            return Response(
                "416 Range Not Satisfiable\n",
                416,
                headers=[("Content-Range", f"bytes */{size}")],
            )
        if isinstance(span, tuple):
            first, last = span
            headers.append(("Content-Range", f"bytes {first}-{last}/{size}"))
            return FileResponse(
                fd,
                offset=first,
                length=last - first + 1,
                status=206,
                headers=headers,
                content_type=content_type,
            )
        return FileResponse(fd, length=size, headers=headers, content_type=content_type)
