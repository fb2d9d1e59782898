"""Object storage: one small interface, a filesystem backend and an S3 backend."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError


class ObjectNotFound(KeyError):
    """No object under that key."""


class Storage(Protocol):
    """Objects by key (`tenants/ten_x/invoices/inv_y.pdf`); keys use `/` and never start with one."""

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...

    def put_file(self, key: str, source: BinaryIO, content_type: str = "application/octet-stream") -> None:
        """Store what `source` reads from its position to its end, in pieces: large objects never sit in memory."""
        ...

    def get(self, key: str) -> bytes: ...

    def lines(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The object's lines (without their line ends), read piece by piece: memory does not grow with its size.

        With `start` and `end`, the lines of those bytes only (a ranged read); `start` should be where a line starts.
        """
        ...

    def blocks(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The object's bytes from `start` to `end` (exclusive, or its end), in pieces of about a mebibyte."""
        ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int:
        """How many bytes are stored under `key`; ObjectNotFound if there are none."""
        ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str) -> list[str]:
        """Keys under `prefix`, sorted."""
        ...

    def move(self, key: str, new_key: str) -> None: ...

    def url(self, key: str, expires_in: int = 3600) -> str | None:
        """A direct download URL where the backend has one (S3 presigned); None otherwise."""
        ...

    def check(self) -> None:
        """Raise if the backend cannot be reached (used by /readyz)."""
        ...


class StorageUnavailable(RuntimeError):
    """The backend cannot be reached or written (raised by `check()`)."""


# Ranged reads come in pieces of this size.
_BLOCK = 1 << 20
# Temporary files of FileStorage carry this name prefix; keys may not use it, so `list` can skip them.
_TEMP_PREFIX = ".~tmp-"


def validate_key(key: str) -> str:
    """Return `key` if it is a valid object key; raise ValueError otherwise."""
    if not key:
        raise ValueError("object key is empty")
    if key.startswith("/"):
        raise ValueError(f"object key {key!r} starts with '/'")
    if "\\" in key or "\x00" in key:
        raise ValueError(f"object key {key!r} contains a backslash or a NUL character")
    for segment in key.split("/"):
        if not segment:
            raise ValueError(f"object key {key!r} has an empty segment")
        if segment in {".", ".."}:
            raise ValueError(f"object key {key!r} has a {segment!r} segment")
        if segment.startswith(_TEMP_PREFIX):
            raise ValueError(f"object key {key!r} uses the reserved prefix {_TEMP_PREFIX!r}")
    return key


def _validate_prefix(prefix: str) -> str:
    # A prefix may end with '/' or part-way through a segment, but must not escape the root.
    if prefix.startswith("/"):
        raise ValueError(f"prefix {prefix!r} starts with '/'")
    if "\\" in prefix or "\x00" in prefix:
        raise ValueError(f"prefix {prefix!r} contains a backslash or a NUL character")
    if any(segment in {".", ".."} for segment in prefix.split("/")):
        raise ValueError(f"prefix {prefix!r} has a '.' or '..' segment")
    return prefix


class FileStorage:
    """Objects as files under `root`; writes are atomic (temp file then rename)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"FileStorage({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Store `data` under `key`, replacing any object there (the content type is not kept)."""
        self._write_atomically(self._writable_path(key), data)

    def put_file(self, key: str, source: BinaryIO, content_type: str = "application/octet-stream") -> None:
        """Store the rest of `source` under `key`, copied in pieces, replacing any object there."""
        self._write_atomically(self._writable_path(key), source)

    def _writable_path(self, key: str) -> Path:
        """Where `key` is written, its folders made; a key that is a folder or runs through an object is refused."""
        path = self._path(key)
        if path.is_dir():
            raise ValueError(f"object key {key!r} is a folder of other keys here")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise ValueError(f"object key {key!r} runs through an existing object") from exc
        return path

    @staticmethod
    def _write_atomically(path: Path, data: bytes | BinaryIO) -> None:
        fd, tmp_name = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as tmp:
                if isinstance(data, bytes):
                    tmp.write(data)
                else:
                    shutil.copyfileobj(data, tmp)
                tmp.flush()
                # Without fsync a crash right after the rename can leave an empty file under the key.
                os.fsync(tmp.fileno())
            os.replace(tmp_name, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise

    def get(self, key: str) -> bytes:
        """The bytes under `key`; ObjectNotFound if there are none."""
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFound(key) from exc

    def _open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFound(key) from exc

    def lines(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The lines under `key` (of bytes `start` to `end`), read one by one; ObjectNotFound if there is none."""
        source = self._open(key)
        with source:
            if start:
                source.seek(start)
            if end is None:
                for line in source:
                    yield line.rstrip(b"\r\n")
                return
            left = end - start
            for line in source:
                if left <= 0:
                    return
                left -= len(line)
                yield line.rstrip(b"\r\n")

    def blocks(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes under `key` from `start` to `end`, a mebibyte at a time; ObjectNotFound if there is none."""
        source = self._open(key)
        with source:
            source.seek(start)
            left = None if end is None else max(end - start, 0)
            while left is None or left > 0:
                block = source.read(_BLOCK if left is None else min(_BLOCK, left))
                if not block:
                    return
                if left is not None:
                    left -= len(block)
                yield block

    def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        """How many bytes are stored under `key`; ObjectNotFound if there are none."""
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(key)
        return path.stat().st_size

    def delete(self, key: str) -> None:
        """Remove the object under `key`; deleting a missing key is not an error (as on S3)."""
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        self._prune_empty_folders(path.parent)

    def _prune_empty_folders(self, folder: Path) -> None:
        # S3 has no folders; removing the ones left empty keeps `list` and the disk in step with it.
        root = self.root.resolve()
        current = folder
        while current.resolve() != root and root in current.resolve().parents:
            try:
                current.rmdir()
            except OSError:
                return
            current = current.parent

    def list(self, prefix: str) -> list[str]:
        """Keys that start with `prefix` (a plain string prefix, as on S3), sorted."""
        _validate_prefix(prefix)
        folder_part, _, _ = prefix.rpartition("/")
        start = self.root.joinpath(*folder_part.split("/")) if folder_part else self.root
        if not start.is_dir():
            return []
        keys: list[str] = []
        for dirpath, _dirnames, filenames in os.walk(start):
            base = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if name.startswith(_TEMP_PREFIX):
                    continue
                key = name if base == "." else f"{base}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def move(self, key: str, new_key: str) -> None:
        """Rename `key` to `new_key` atomically; ObjectNotFound if `key` is missing."""
        source = self._path(key)
        target = self._path(new_key)
        if not source.is_file():
            raise ObjectNotFound(key)
        if target.is_dir():
            raise ValueError(f"object key {new_key!r} is a folder of other keys here")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise ValueError(f"object key {new_key!r} runs through an existing object") from exc
        try:
            os.replace(source, target)
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc
        self._prune_empty_folders(source.parent)

    def url(self, key: str, expires_in: int = 3600) -> str | None:
        """None: files are served through the application, never directly."""
        validate_key(key)
        return None

    def check(self) -> None:
        """Raise StorageUnavailable unless the root folder exists (or can be made) and is writable."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=self.root)
            os.close(fd)
            os.unlink(tmp_name)
        except OSError as exc:
            raise StorageUnavailable(f"storage folder {str(self.root)!r} is not writable: {exc}") from exc


def _s3_config(endpoint_url: str | None) -> Config:
    return Config(
        # Presigned URLs against a custom endpoint otherwise come out in the legacy v2 form.
        signature_version="s3v4",
        # boto3 >= 1.36 adds CRC checksums that some S3-compatible servers reject (boto3 #4392).
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        # Self-hosted S3s rarely have wildcard DNS for virtual-hosted buckets.
        s3={"addressing_style": "path"} if endpoint_url else {},
        connect_timeout=5,
        read_timeout=30,
        retries={"max_attempts": 4, "mode": "standard"},
    )


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


_MISSING_CODES = frozenset({"NoSuchKey", "NotFound", "404"})


class S3Storage:
    """Objects in an S3 bucket (AWS or any S3-compatible server), optionally under a key prefix."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        client: Any = None,
        page_size: int = 1000,
    ) -> None:
        if not bucket:
            raise ValueError("S3 bucket name is empty")
        self.bucket = bucket
        stripped = prefix.strip("/")
        if stripped:
            validate_key(stripped)
        self.prefix = f"{stripped}/" if stripped else ""
        self.endpoint_url = endpoint_url
        self.page_size = page_size
        self.client: Any = client or boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=_s3_config(endpoint_url)
        )

    def __repr__(self) -> str:
        return f"S3Storage(bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint_url={self.endpoint_url!r})"

    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Store `data` under `key` with its content type."""
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type)

    def put_file(self, key: str, source: BinaryIO, content_type: str = "application/octet-stream") -> None:
        """Store the rest of `source` under `key`; large objects go up as a multipart upload, part by part."""
        self.client.upload_fileobj(source, self.bucket, self._key(key), ExtraArgs={"ContentType": content_type})

    def get(self, key: str) -> bytes:
        """The bytes under `key`; ObjectNotFound if there are none."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                raise ObjectNotFound(key) from exc
            raise
        body = response["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def _body(self, key: str, start: int, end: int | None) -> Any:
        """The streaming body of the object, or of its bytes `start` to `end` (a Range GET)."""
        extra: dict[str, str] = {}
        if start or end is not None:
            extra["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key), **extra)
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                raise ObjectNotFound(key) from exc
            if _error_code(exc) == "InvalidRange":  # a range past the end: no bytes
                return None
            raise
        return response["Body"]

    def lines(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The lines under `key` (of bytes `start` to `end`), streamed in chunks; ObjectNotFound if there is none."""
        if end is not None and end <= start:
            return
        body = self._body(key, start, end)
        if body is None:
            return
        try:
            for line in body.iter_lines(chunk_size=64 * 1024):
                yield bytes(line).rstrip(b"\r")
        finally:
            body.close()

    def blocks(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes under `key` from `start` to `end`, a mebibyte at a time; ObjectNotFound if there is none."""
        if end is not None and end <= start:
            return
        body = self._body(key, start, end)
        if body is None:
            return
        try:
            yield from body.iter_chunks(chunk_size=_BLOCK)
        finally:
            body.close()

    def exists(self, key: str) -> bool:
        """Whether an object is stored under `key` (the HEAD request of `size`)."""
        try:
            self.size(key)
        except ObjectNotFound:
            return False
        return True

    def size(self, key: str) -> int:
        """How many bytes are stored under `key` (a HEAD request); ObjectNotFound if there are none."""
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                raise ObjectNotFound(key) from exc
            raise
        return int(response["ContentLength"])

    def delete(self, key: str) -> None:
        """Remove the object under `key`; deleting a missing key is not an error."""
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str) -> list[str]:
        """Keys that start with `prefix`, sorted, across every page of results."""
        _validate_prefix(prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        keys: list[str] = []
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix, PaginationConfig={"PageSize": self.page_size}
        )
        for page in pages:
            keys.extend(item["Key"][len(self.prefix) :] for item in page.get("Contents", []))
        return sorted(keys)

    def move(self, key: str, new_key: str) -> None:
        """Copy `key` to `new_key`, then delete `key`; ObjectNotFound if `key` is missing."""
        source = self._key(key)
        target = self._key(new_key)
        if source == target:
            # S3 refuses to copy an object onto itself without changing it.
            if not self.exists(key):
                raise ObjectNotFound(key)
            return
        try:
            self.client.copy_object(Bucket=self.bucket, Key=target, CopySource={"Bucket": self.bucket, "Key": source})
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                raise ObjectNotFound(key) from exc
            raise
        self.client.delete_object(Bucket=self.bucket, Key=source)

    def url(self, key: str, expires_in: int = 3600) -> str | None:
        """A presigned GET URL valid for `expires_in` seconds."""
        return str(
            self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=expires_in
            )
        )

    def check(self) -> None:
        """Raise StorageUnavailable unless the bucket answers a HEAD request."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise StorageUnavailable(f"S3 bucket {self.bucket!r} is not reachable: {exc}") from exc


def build_storage(storage_url: str, *, s3_endpoint_url: str | None = None, s3_region: str = "us-east-1") -> Storage:
    """Storage for `file://relative/or/absolute/path` or `s3://bucket/optional/prefix`."""
    if storage_url.startswith("file://"):
        # Not urlsplit: it would read the first folder of a relative path as a host name.
        path = storage_url.removeprefix("file://")
        if not path:
            raise ValueError(f"storage URL {storage_url!r}: file:// needs a folder")
        return FileStorage(Path(path))
    if storage_url.startswith("s3://"):
        parts = urlsplit(storage_url)
        if not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"storage URL {storage_url!r}: expected s3://bucket or s3://bucket/prefix")
        return S3Storage(parts.netloc, prefix=parts.path, endpoint_url=s3_endpoint_url or None, region=s3_region)
    raise ValueError(f"storage URL {storage_url!r}: expected file://folder or s3://bucket[/prefix]")
