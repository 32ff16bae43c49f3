"""Read a classifier's class labels from an ONNX file without the ``onnx`` package.

onnxruntime does not expose the graph, and ``onnx`` is not a serving dependency, so
this walks the protobuf wire format just far enough: ModelProto.graph (7) ->
GraphProto.node (1) -> NodeProto.op_type (4) / attribute (5) -> AttributeProto
name (1), ints (8), strings (9). Everything else is skipped by length.
"""

from __future__ import annotations

from collections.abc import Iterator

_INT64_WRAP = 1 << 64
_INT64_SIGN = 1 << 63


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value or start, end) for each field in buf[start:end]."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield field, wire, value, pos
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > end:
                raise ValueError("truncated field")
            yield field, wire, pos, pos + size
            pos += size
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")


def _attribute(buf: bytes, start: int, end: int) -> tuple[str, list[str | int]]:
    name = ""
    values: list[str | int] = []
    for field, wire, a, b in _fields(buf, start, end):
        if field == 1 and wire == 2:
            name = buf[a:b].decode()
        elif field == 9 and wire == 2:
            values.append(buf[a:b].decode())
        elif field == 8 and wire == 0:
            values.append(a - _INT64_WRAP if a >= _INT64_SIGN else a)
        elif field == 8 and wire == 2:  # packed ints
            pos = a
            while pos < b:
                v, pos = _varint(buf, pos)
                values.append(v - _INT64_WRAP if v >= _INT64_SIGN else v)
    return name, values


def class_labels(data: bytes) -> list[str | int] | None:
    """The class labels of the model's classifier node (ZipMap first), or None if none."""
    found: list[str | int] | None = None
    try:
        for field, wire, g0, g1 in _fields(data, 0, len(data)):
            if field != 7 or wire != 2:
                continue
            for nfield, nwire, n0, n1 in _fields(data, g0, g1):
                if nfield != 1 or nwire != 2:
                    continue
                op_type, labels = "", None
                for afield, awire, a0, a1 in _fields(data, n0, n1):
                    if afield == 4 and awire == 2:
                        op_type = data[a0:a1].decode()
                    elif afield == 5 and awire == 2:
                        name, values = _attribute(data, a0, a1)
                        if name.startswith("classlabels_") and values:
                            labels = values
                if labels is not None:
                    if op_type == "ZipMap":
                        return labels
                    found = labels  # the last classifier node decides the output
    except (ValueError, IndexError, UnicodeDecodeError):
        return None  # not a model we can read; the caller falls back
    return found
