"""Object storage: one small interface, a filesystem backend and an S3 backend."""

from __future__ import annotations

from typing import Protocol


class ObjectNotFound(KeyError):
    """No object under that key."""


class Storage(Protocol):
    """Objects by key (`tenants/ten_x/invoices/inv_y.pdf`); keys use `/` and never start with one."""

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

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
