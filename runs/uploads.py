"""Storing uploaded inputs, with zip archives unpacked safely (no traversal, no bombs)."""

from __future__ import annotations

import hashlib
import io
import posixpath
import secrets
import zipfile
from collections.abc import Iterable

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from orgs.api_errors import ApiError
from orgs.models import Org
from orgs.quotas import check_storage
from trajectories.actions import stored_file_name

from .models import Upload

MAX_MEMBERS = 10_000
MAX_RATIO = 200  # uncompressed / compressed, per member


def safe_path(name: str) -> str:
    """A relative POSIX path with no traversal, or ApiError 400."""
    normal = posixpath.normpath(name.replace("\\", "/"))
    if not name or name.startswith("/") or normal.startswith("..") or normal in (".", "") or "\x00" in name:
        raise ApiError(
            400,
            f"Unsafe file name {name!r}: names must be relative and stay inside the upload",
            code="unsafe_path",
            param="files",
        )
    return normal


def _members(archive: zipfile.ZipFile, compressed_size: int) -> Iterable[tuple[str, bytes]]:
    infos = [i for i in archive.infolist() if not i.is_dir()]
    if len(infos) > MAX_MEMBERS:
        raise ApiError(413, f"The archive has more than {MAX_MEMBERS} files", code="archive_too_large")
    declared = sum(i.file_size for i in infos)
    if declared > settings.JETTY_MAX_UPLOAD_BYTES:
        raise ApiError(413, "The archive unpacks to more than the upload limit", code="archive_too_large")
    total = 0
    for info in infos:
        path = safe_path(info.filename)
        if info.file_size > max(info.compress_size, 1) * MAX_RATIO and info.file_size > 10 * 1024 * 1024:
            raise ApiError(413, f"{path} expands suspiciously (zip bomb?)", code="archive_too_large")
        with archive.open(info) as member:
            data = member.read(settings.JETTY_MAX_UPLOAD_BYTES + 1 - total)
        total += len(data)
        if total > settings.JETTY_MAX_UPLOAD_BYTES:  # sizes in the header can lie
            raise ApiError(413, "The archive unpacks to more than the upload limit", code="archive_too_large")
        yield path, data


def store_uploads(org: Org, files: list[UploadedFile], purpose: str = "assistants") -> list[Upload]:
    """Store files (unpacking .zip archives) under one new batch; all or nothing."""
    batch = secrets.token_hex(8)
    entries: list[tuple[str, bytes]] = []
    for upload in files:
        if (upload.size or 0) > settings.JETTY_MAX_UPLOAD_BYTES:
            raise ApiError(
                413, f"{upload.name} is larger than {settings.JETTY_MAX_UPLOAD_BYTES} bytes", code="file_too_large"
            )
        name = safe_path(upload.name or "upload")
        data = upload.read()
        if name.lower().endswith(".zip"):
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as archive:
                    entries.extend(_members(archive, len(data)))
            except zipfile.BadZipFile:
                raise ApiError(400, f"{name} is not a valid zip archive", code="invalid_archive", param="files")
        else:
            entries.append((name, data))
    if not entries:
        raise ApiError(400, "No files were sent (multipart field `files`)", code="missing_files", param="files")
    paths = [path for path, _ in entries]
    if len(set(paths)) < len(paths):
        twice = next(path for path in paths if paths.count(path) > 1)
        raise ApiError(400, f"Two files have the path {twice}", code="duplicate_path", param="files")
    check_storage(org.pk, sum(len(data) for _, data in entries), param="files")
    made: list[Upload] = []
    with transaction.atomic():
        for path, data in entries:
            stored = Upload(
                org=org,
                public_id=f"file-{secrets.token_hex(12)}",
                key=f"uploads/{batch}/{path}",
                path=path,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                purpose=purpose,
            )
            stored.file.save(stored_file_name(f"{org.public_id}/{batch}", path), ContentFile(data), save=False)
            stored.save()
            made.append(stored)
    return made
