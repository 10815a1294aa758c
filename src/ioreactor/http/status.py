"""Status codes and their reason phrases, as RFC 9110 (section 15) names them.

Python's :class:`http.HTTPStatus` before 3.13 still has RFC 7231's older phrases for
413, 414, 416 and 422 ("Request Entity Too Large", ...); the status line and the error
body would then disagree. This table is the one place the server takes a phrase from.
Codes RFC 9110 does not define keep the phrase of their own RFC (HTTPStatus's).
"""

from __future__ import annotations

from http import HTTPStatus

#: The phrases RFC 9110 renamed.
RFC9110_RENAMED = {
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
}

#: Status code -> reason phrase.
REASON_PHRASES: dict[int, str] = {int(s): s.phrase for s in HTTPStatus} | RFC9110_RENAMED
