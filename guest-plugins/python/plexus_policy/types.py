"""The records of `plexus:policy/types@0.4.0`, shared by every world.

They are the dataclasses componentize-py generates for the WIT (`_wit_types`), with a
default for every field, so a policy writes `Attachment(network_file=..., ifname=...)`
instead of naming all six fields: strings default to `""`, numbers to `0`, `bool` to
`False`, options to `None`, lists to `[]`, records to their own defaults. They are
subclasses of the generated ones; inside a component the host's requests arrive as the
generated classes, and the answers a policy builds from these are lowered field by field.

`to_json` and `from_json` convert to and from the JSON `plexus policy run` and `test`
read and print (the WIT's kebab-case field names, tuples as lists).
"""

import dataclasses
import typing

from . import _wit_types

__all__ = [
    "Pod",
    "Network",
    "SelectRequest",
    "Attachment",
    "Interface",
    "IpConfig",
    "Route",
    "Dns",
    "CniResult",
    "DelegateResult",
    "MergeRequest",
    "PolicyMetadata",
    "IpamRequest",
    "AttachmentId",
    "GcRequest",
    "to_json",
    "from_json",
]

# Generated record -> its subclass with defaults, filled as the subclasses are made
# (a record's fields may be records, made before it, as the WIT declares them in order).
_WITH_DEFAULTS: dict = {}


def _default_of(hint):
    """A `dataclasses.field` giving the default value of a field typed `hint`."""
    origin = typing.get_origin(hint)
    if origin is typing.Union:  # Optional[X]
        return dataclasses.field(default=None)
    if origin is list:
        return dataclasses.field(default_factory=list)
    if hint in _WITH_DEFAULTS:
        return dataclasses.field(default_factory=_WITH_DEFAULTS[hint])
    if hint in (str, int, bool):
        return dataclasses.field(default=hint())
    raise TypeError(f"no default for a WIT field of type {hint!r}")


def _with_defaults(generated):
    hints = typing.get_type_hints(generated)
    fields = [
        (field.name, hints[field.name], _default_of(hints[field.name]))
        for field in dataclasses.fields(generated)
    ]
    record = dataclasses.make_dataclass(
        generated.__name__, fields, bases=(generated,), namespace={"__doc__": generated.__doc__}
    )
    record.__module__ = __name__
    _WITH_DEFAULTS[generated] = record
    return record


Pod = _with_defaults(_wit_types.Pod)
Network = _with_defaults(_wit_types.Network)
SelectRequest = _with_defaults(_wit_types.SelectRequest)
Attachment = _with_defaults(_wit_types.Attachment)
Interface = _with_defaults(_wit_types.Interface)
IpConfig = _with_defaults(_wit_types.IpConfig)
Route = _with_defaults(_wit_types.Route)
Dns = _with_defaults(_wit_types.Dns)
CniResult = _with_defaults(_wit_types.CniResult)
DelegateResult = _with_defaults(_wit_types.DelegateResult)
MergeRequest = _with_defaults(_wit_types.MergeRequest)
PolicyMetadata = _with_defaults(_wit_types.PolicyMetadata)
IpamRequest = _with_defaults(_wit_types.IpamRequest)
AttachmentId = _with_defaults(_wit_types.AttachmentId)
GcRequest = _with_defaults(_wit_types.GcRequest)


def _wit_name(field_name):
    return field_name.replace("_", "-")


def to_json(value):
    """`value` (a record, a list of them, or a plain value) as JSON data, keyed as the WIT."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {_wit_name(field.name): to_json(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    return value


def from_json(record, data, where="request"):
    """`data` (JSON data) as a `record` (one of the classes above). A missing field takes its
    default; a field the record does not have is an error, as the host refuses it."""
    return _convert(record, data, where)


def _convert(hint, data, where):
    generated = next((base for base in _WITH_DEFAULTS if _WITH_DEFAULTS[base] is hint), None)
    if generated is not None:
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected an object, got {data!r}")
        hints = typing.get_type_hints(generated)
        known = {_wit_name(field.name): field.name for field in dataclasses.fields(generated)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"{where}: unknown field `{unknown[0]}`, expected one of {', '.join(known)}")
        values = {
            known[key]: _convert(_WITH_DEFAULTS.get(hints[known[key]], hints[known[key]]), value, f"{where}.{key}")
            for key, value in data.items()
        }
        return hint(**values)
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        if data is None:
            return None
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _convert(inner, data, where)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(data, list):
            raise ValueError(f"{where}: expected a list, got {data!r}")
        item = _WITH_DEFAULTS.get(item, item)
        return [_convert(item, value, f"{where}[{index}]") for index, value in enumerate(data)]
    if origin is tuple:
        items = typing.get_args(hint)
        if not isinstance(data, list) or len(data) != len(items):
            raise ValueError(f"{where}: expected a list of {len(items)}, got {data!r}")
        return tuple(_convert(item, value, where) for item, value in zip(items, data))
    if hint is bool or hint is str:
        if not isinstance(data, hint):
            raise ValueError(f"{where}: expected a {hint.__name__}, got {data!r}")
        return data
    if hint is int:
        if isinstance(data, bool) or not isinstance(data, int) or data < 0:
            raise ValueError(f"{where}: expected an unsigned integer, got {data!r}")
        return data
    raise TypeError(f"{where}: cannot read a {hint!r}")

