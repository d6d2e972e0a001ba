"""An object store on any S3-protocol server (MinIO, Ceph RGW, AWS S3), through the `minio` client.

A single-request PUT (and a completed multipart upload) becomes visible all at once, which gives
the atomic `put` the interface promises. Every failure of the client library is translated into
an `atelier.errors` error, so callers never see minio or urllib3 exceptions.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

import urllib3
from minio import Minio
from minio.datatypes import Object
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError

from atelier.errors import (
    AtelierError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from atelier.runtime.objectstore.base import ObjectStore
from atelier.runtime.objectstore.local import check_range, key_problem, validate_key

_UNAUTHENTICATED_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "InvalidSecurity"}
)
_PERMISSION_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "AccountProblem"})
_TRANSIENT_CODES = frozenset({"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"})


class S3ObjectStore(ObjectStore):
    """Objects stored in one S3 bucket, optionally under a key prefix so stores can share a bucket.

    `http_client` replaces minio's default connection pool (5-minute timeouts, 5 retries), e.g. to
    fail fast in tests or to tune pool size.
    """

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        secure: bool = False,
        region: str | None = None,
        prefix: str = "",
        http_client: urllib3.PoolManager | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        self.prefix = _normalise_prefix(prefix)
        try:
            self._client = Minio(
                endpoint,
                access_key=access_key,
                secret_key=secret_key,
                secure=secure,
                region=region,
                http_client=http_client,
            )
        except ValueError as exc:
            raise InvalidArgument(
                f"S3 endpoint {endpoint!r} is invalid: {exc}; expected 'host' or 'host:port'"
            ) from exc
        self._ensure_bucket()

    def __repr__(self) -> str:
        return f"S3ObjectStore(endpoint={self.endpoint!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"

    def _ensure_bucket(self) -> None:
        with self._translate(f"bucket {self.bucket!r}"):
            if self._client.bucket_exists(self.bucket):
                return
            try:
                self._client.make_bucket(self.bucket)
            except S3Error as exc:
                # Another store created it between our check and our create: that is the goal anyway.
                if exc.code != "BucketAlreadyOwnedByYou":
                    raise

    def _name(self, key: str) -> str:
        validate_key(key)
        return self.prefix + key

    def put(self, key: str, data: bytes) -> None:
        """Upload `data` in one request (multipart for large objects); S3 publishes it whole."""
        name = self._name(key)
        with self._translate(f"object {key!r}"):
            self._client.put_object(self.bucket, name, io.BytesIO(data), len(data))

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Fetch the range with one ranged GET; a range past the end is cut short, as with a file."""
        name = self._name(key)
        check_range(key, offset, length)
        if length == 0:
            # minio reads `length=0` as "to the end", so an empty range needs no GET, only a check.
            if not self.exists(key):
                raise NotFound(f"object {key!r} not found")
            return b""
        with self._translate(f"object {key!r}"):
            return self._get_range(name, offset, length)

    def _get_range(self, name: str, offset: int, length: int | None) -> bytes:
        try:
            response = self._client.get_object(self.bucket, name, offset=offset, length=length or 0)
        except S3Error as exc:
            # 416 comes only for an existing object whose size is <= offset (or which is empty).
            if exc.code == "InvalidRange":
                return b""
            raise
        try:
            data = response.read()
            ranged = response.status == 206
        finally:
            response.close()
            response.release_conn()
        if not ranged and (offset or length is not None):
            # Some servers ignore a Range header and send the whole object; cut the range here.
            end = None if length is None else offset + length
            data = data[offset:end]
        return data

    def delete(self, key: str) -> None:
        """Remove the object; S3 itself treats deleting a missing object as success."""
        name = self._name(key)
        with self._translate(f"object {key!r}"):
            self._client.remove_object(self.bucket, name)

    def exists(self, key: str) -> bool:
        """Whether the object exists, by a HEAD request."""
        name = self._name(key)
        with self._translate(f"object {key!r}"):
            try:
                self._client.stat_object(self.bucket, name)
            except S3Error as exc:
                if exc.code == "NoSuchKey":
                    return False
                raise
        return True

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """Yield `(key, size)` in key order, paging through the bucket listing lazily."""
        with self._translate(f"objects under {prefix!r}"):
            objects = self._client.list_objects(self.bucket, prefix=self.prefix + prefix, recursive=True)
            for obj in objects:
                entry = self._entry(obj)
                if entry is not None:
                    yield entry

    def _entry(self, obj: Object) -> tuple[str, int] | None:
        key = (obj.object_name or "").removeprefix(self.prefix)
        # Objects written to the bucket by other tools may have names no store could read back.
        if key_problem(key) is not None:
            return None
        return key, obj.size or 0

    @contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        """Re-raise any minio/urllib3 failure inside the block as an `atelier.errors` error."""
        try:
            yield
        except S3Error as exc:
            raise self._s3_error(what, exc) from exc
        except (ServerError, InvalidResponseError) as exc:
            raise Unavailable(f"S3 endpoint {self.endpoint} failed on {what}: {exc}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unavailable(f"S3 endpoint {self.endpoint} is unreachable ({what}): {exc}") from exc
        except MinioException as exc:
            raise Internal(f"S3 endpoint {self.endpoint} failed on {what}: {exc}") from exc
        except ValueError as exc:
            # minio validates names client-side and raises ValueError for ones S3 would refuse.
            message = f"S3 request for {what} in bucket {self.bucket!r} is invalid: {exc}"
            raise InvalidArgument(message) from exc

    def _s3_error(self, what: str, exc: S3Error) -> AtelierError:
        detail = f"{what} in bucket {self.bucket!r} at {self.endpoint}: {exc.code}: {exc.message}"
        if exc.code == "NoSuchKey":
            return NotFound(f"{what} not found")
        if exc.code == "NoSuchBucket":
            # A missing bucket means the store is misconfigured or was removed, not a missing object.
            return FailedPrecondition(f"bucket {self.bucket!r} does not exist at {self.endpoint}")
        if exc.code in _UNAUTHENTICATED_CODES:
            return Unauthenticated(f"S3 rejected the credentials for {detail}")
        if exc.code in _PERMISSION_CODES:
            return PermissionDenied(f"S3 denied access to {detail}")
        if exc.code in _TRANSIENT_CODES:
            return Unavailable(f"S3 is temporarily failing for {detail}")
        return Internal(f"S3 request failed for {detail}")


def _normalise_prefix(prefix: str) -> str:
    """Treat the prefix as a directory: `team-a` and `team-a/` both give keys `team-a/<key>`."""
    stripped = prefix.strip("/")
    if not stripped:
        return ""
    problem = key_problem(stripped)
    if problem is not None:
        raise InvalidArgument(f"S3 key prefix {prefix!r} is invalid: {problem}")
    return f"{stripped}/"
