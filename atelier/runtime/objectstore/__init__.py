"""Object stores for pack data, and `open_object_store` to pick one from a configuration URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from atelier.errors import InvalidArgument
from atelier.runtime.objectstore.base import ObjectStore
from atelier.runtime.objectstore.local import LocalObjectStore
from atelier.runtime.objectstore.s3 import S3ObjectStore

__all__ = ["LocalObjectStore", "ObjectStore", "S3ObjectStore", "open_object_store"]

ACCEPTED_FORMS = (
    "a filesystem path, file:///absolute/path, or "
    "s3://ACCESS:SECRET@host[:port]/bucket[/prefix][?secure=true|false&region=NAME]"
)
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_S3_QUERY_KEYS = frozenset({"secure", "region"})


def open_object_store(url: str) -> ObjectStore:
    """Open the store a URL names: a path or `file:` URL (local) or an `s3:` URL.

    Credentials in an `s3:` URL are percent-decoded, so a secret containing `/` or `@` can be
    written as `%2F` or `%40`. Raises `InvalidArgument` naming the URL (secret hidden) when it is
    malformed. Opening an S3 store contacts the server, so it can also raise `Unavailable` etc.
    """
    if not url.strip():
        raise _bad_url(url, "it is empty")
    if "://" not in url:
        return LocalObjectStore(Path(url))
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalObjectStore(_file_path(url, parts))
    if parts.scheme == "s3":
        return _open_s3(url, parts)
    raise _bad_url(url, f"the scheme {parts.scheme!r} is not supported")


def _file_path(url: str, parts: SplitResult) -> Path:
    if parts.netloc not in ("", "localhost"):
        raise _bad_url(url, f"a file URL cannot name the host {parts.netloc!r}")
    if parts.query or parts.fragment:
        raise _bad_url(url, "a file URL takes no query or fragment")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise _bad_url(url, "a file URL needs an absolute path")
    return Path(path)


def _open_s3(url: str, parts: SplitResult) -> S3ObjectStore:
    credentials, at, endpoint = parts.netloc.rpartition("@")
    access_key, colon, secret_key = credentials.partition(":")
    if not at or not colon or not access_key or not secret_key:
        raise _bad_url(url, "it needs credentials as ACCESS:SECRET@")
    _check_port(url, parts)
    if not endpoint or endpoint.startswith(":"):
        raise _bad_url(url, "it needs a host")
    if parts.fragment:
        raise _bad_url(url, "an s3 URL takes no fragment")
    bucket, _, prefix = parts.path.lstrip("/").partition("/")
    if not bucket:
        raise _bad_url(url, "it needs a bucket as the first path segment")
    secure, region = _s3_options(url, parts.query)
    return S3ObjectStore(
        endpoint,
        unquote(access_key),
        unquote(secret_key),
        unquote(bucket),
        secure=secure,
        region=region,
        prefix=unquote(prefix),
    )


def _check_port(url: str, parts: SplitResult) -> None:
    try:
        # urllib validates the port only when it is read.
        _ = parts.port
    except ValueError as exc:
        raise _bad_url(url, f"the port is invalid ({exc})") from exc


def _s3_options(url: str, query: str) -> tuple[bool, str | None]:
    try:
        options = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise _bad_url(url, f"the query is malformed ({exc})") from exc
    unknown = sorted(set(options) - _S3_QUERY_KEYS)
    if unknown:
        raise _bad_url(url, f"unknown query parameter(s) {', '.join(unknown)}")
    if any(len(values) > 1 for values in options.values()):
        raise _bad_url(url, "a query parameter is given more than once")
    secure = _parse_bool(url, options.get("secure", ["false"])[0])
    region = options.get("region", [""])[0] or None
    return secure, region


def _parse_bool(url: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _bad_url(url, f"secure={value!r} is not true or false")


def _bad_url(url: str, reason: str) -> InvalidArgument:
    shown = _redact(url)
    return InvalidArgument(f"object store URL {shown!r} is invalid: {reason}; expected {ACCEPTED_FORMS}")


def _redact(url: str) -> str:
    """Hide the secret key so the URL can go into error messages and logs."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    credentials, at, host = netloc.rpartition("@")
    access_key, colon, secret_key = credentials.partition(":")
    if not sep or not at or not secret_key:
        return url
    return f"{scheme}://{access_key}:***@{host}{slash}{tail}"
