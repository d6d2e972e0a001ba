"""Moments as the services store and send them: tables hold UTC datetimes (naive ones, as some drivers
return them, are taken as UTC); the API carries `google.protobuf.Timestamp`."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from atelier.errors import InvalidArgument


def utc(moment: datetime) -> datetime:
    """`moment` as an aware UTC datetime (a naive one is taken to be UTC already)."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_datetime(stamp: timestamp_pb2.Timestamp, field: str) -> datetime:
    """A request's Timestamp as an aware UTC datetime; INVALID_ARGUMENT naming `field` for one outside
    what a Timestamp may hold (a ValueError, which would answer INTERNAL, otherwise)."""
    try:
        return stamp.ToDatetime(UTC)
    except ValueError:
        raise InvalidArgument(
            f"{field} has seconds {stamp.seconds} and nanos {stamp.nanos}; allowed: times from 0001-01-01 to "
            "9999-12-31 (seconds -62135596800 to 253402300799, nanos 0 to 999999999)",
            metadata={"field": field},
        ) from None


def optional_datetime(message: Message, field: str, label: str = "") -> datetime | None:
    """`message.<field>` as `to_datetime` gives it, or None when the field is unset; errors name
    `label` (the field's path in the request) or else `field`."""
    if not message.HasField(field):
        return None
    return to_datetime(getattr(message, field), label or field)


def to_timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    """A protobuf Timestamp of `moment` (from its distance to the epoch: `Timestamp.FromDatetime`
    takes five times as long, about 10 us, and every resource a service returns carries one)."""
    since = utc(moment) - _EPOCH
    return timestamp_pb2.Timestamp(seconds=since.days * 86400 + since.seconds, nanos=since.microseconds * 1000)


def epoch_seconds(moment: datetime | None) -> float:
    """Seconds since the Unix epoch; 0 for no moment."""
    return 0.0 if moment is None else utc(moment).timestamp()
