"""The one way to send a file a tenant or an agent produced (artifacts, workspace blobs, uploads, ingested files).

Such a file is hostile: an agent's `results/x.html` or `x.svg` would run its script as the platform's origin,
with the session of whoever opens it. So every such response is a download, except a short list of types a
browser shows without running anything, sent with exactly that type; none may be sniffed into something else, and
a sandbox CSP gives even a file a browser renders anyway an opaque origin with no script.
"""

from __future__ import annotations

from typing import IO

from django.http import FileResponse

# Types a browser displays without running script in them, and the exact Content-Type each is sent with.
SAFE_INLINE_TYPES = {
    "text/plain": "text/plain; charset=utf-8",
    "application/json": "application/json",
    "image/png": "image/png",
    "image/jpeg": "image/jpeg",
    "image/gif": "image/gif",
    "image/webp": "image/webp",
    "application/pdf": "application/pdf",
}
# No script, no plugins, no subresources, an opaque origin, and no page may frame it.
UNTRUSTED_FILE_CSP = "sandbox; default-src 'none'; frame-ancestors 'none'"


def inline_type(content_type: str | None) -> str | None:
    """The Content-Type to show a file of this stored type inline with, or None when it must be a download."""
    essence = (content_type or "").split(";", 1)[0].strip().lower()
    return SAFE_INLINE_TYPES.get(essence)


def untrusted_file_response(
    file: IO[bytes], *, filename: str, content_type: str | None, download: bool = False
) -> FileResponse:
    """A response for a tenant's or an agent's file that cannot script the platform's origin.

    Safe types open inline unless ``download``; everything else is an ``application/octet-stream`` attachment.
    """
    shown = None if download else inline_type(content_type)
    response = FileResponse(
        file,
        content_type=shown or "application/octet-stream",
        as_attachment=shown is None,
        filename=filename,
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = UNTRUSTED_FILE_CSP
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    return response
