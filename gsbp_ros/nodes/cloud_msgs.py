"""sensor_msgs/PointCloud2: :func:`make_cloud` (x y z, packed ``rgb`` as RViz expects, extra
float32 fields) and :func:`read_points` (any field order, offsets, padding, endianness,
row_step)."""

from __future__ import annotations

import array
from collections.abc import Mapping

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from gsbp_ros.nodes.errors import MessageError

_FIELD_DTYPES: dict[int, np.dtype] = {
    PointField.INT8: np.dtype(np.int8),
    PointField.UINT8: np.dtype(np.uint8),
    PointField.INT16: np.dtype(np.int16),
    PointField.UINT16: np.dtype(np.uint16),
    PointField.INT32: np.dtype(np.int32),
    PointField.UINT32: np.dtype(np.uint32),
    PointField.FLOAT32: np.dtype(np.float32),
    PointField.FLOAT64: np.dtype(np.float64),
}


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """[N, 3] uint8 -> [N] float32 whose bits are 0x00RRGGBB (the ``rgb`` field of RViz/PCL)."""
    rgb = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3).astype("<u4")
    packed = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    return packed.astype("<u4").view("<f4")


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """[N] packed ``rgb`` (float32 bits, or uint32, any byte order) -> [N, 3] uint8."""
    packed = np.asarray(packed)
    if packed.dtype.itemsize != 4:
        raise MessageError(f"packed rgb must be 4 bytes per point, got {packed.dtype}")
    u = packed.view(np.dtype("u4").newbyteorder(packed.dtype.byteorder)).astype(np.uint32)
    return np.stack([(u >> 16) & 255, (u >> 8) & 255, u & 255], axis=-1).astype(np.uint8)


def make_cloud(
    xyz: np.ndarray,
    *,
    rgb: np.ndarray | None = None,
    fields: Mapping[str, np.ndarray] | None = None,
    header: Header | None = None,
) -> PointCloud2:
    """An unorganised PointCloud2 (height 1) with float32 fields x y z [rgb] [fields...].

    Args:
        xyz: [N, 3] points.
        rgb: [N, 3] uint8 colours, packed into a float32 field ``rgb``.
        fields: extra per-point values, each [N], stored as float32 (e.g. score, label).
        header: frame and stamp.
    """
    xyz = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
    n = xyz.shape[0]
    columns: list[tuple[str, np.ndarray]] = [("x", xyz[:, 0]), ("y", xyz[:, 1]), ("z", xyz[:, 2])]
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != (n, 3):
            raise ValueError(f"rgb must be [{n}, 3], got {list(rgb.shape)}")
        columns.append(("rgb", pack_rgb(rgb)))
    for name, values in (fields or {}).items():
        values = np.asarray(values, dtype=np.float32).reshape(-1)
        if values.shape[0] != n:
            raise ValueError(f"field {name!r} has {values.shape[0]} values for {n} points")
        columns.append((name, values))
    # Every field is 4 bytes: fill a [N, F] little-endian uint32 table bit by bit (the packed
    # colours are bit patterns, not numbers, and must not pass through a float conversion).
    table = np.empty((n, len(columns)), dtype="<u4")
    for i, (_, values) in enumerate(columns):
        table[:, i] = np.ascontiguousarray(values, dtype="<f4").view("<u4")
    msg = PointCloud2()
    if header is not None:
        msg.header = header
    msg.height = 1
    msg.width = n
    msg.fields = [
        PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
        for i, (name, _) in enumerate(columns)
    ]
    msg.is_bigendian = False
    msg.point_step = 4 * len(columns)
    msg.row_step = msg.point_step * n
    msg.is_dense = bool(np.isfinite(xyz).all())
    buf = array.array("B")
    buf.frombytes(table.tobytes())
    msg.data = buf
    return msg


def cloud_dtype(msg: PointCloud2) -> np.dtype:
    """The numpy structured dtype of one point of ``msg`` (offsets, padding, endianness)."""
    names, formats, offsets = [], [], []
    order = ">" if msg.is_bigendian else "<"
    for f in msg.fields:
        if f.datatype not in _FIELD_DTYPES:
            raise MessageError(f"PointCloud2 field {f.name!r} has unknown datatype {f.datatype}")
        base = _FIELD_DTYPES[f.datatype].newbyteorder(order)
        count = max(1, int(f.count))
        names.append(f.name)
        formats.append(base if count == 1 else (base, (count,)))
        offsets.append(int(f.offset))
    dt = np.dtype({"names": names, "formats": formats, "offsets": offsets})
    if dt.itemsize > msg.point_step:
        raise MessageError(
            f"PointCloud2 fields need {dt.itemsize} bytes but point_step is {msg.point_step}"
        )
    return np.dtype(
        {"names": names, "formats": formats, "offsets": offsets, "itemsize": msg.point_step}
    )


def read_points(msg: PointCloud2) -> np.ndarray:
    """All points of a PointCloud2 as a [height * width] structured array (row-major).

    Honours ``point_step``, field offsets and counts, ``is_bigendian`` and row padding
    (``row_step`` > ``width * point_step``). Field values keep their stored types.
    """
    dt = cloud_dtype(msg)
    h, w = int(msg.height), int(msg.width)
    row = w * msg.point_step
    if msg.row_step < row:
        raise MessageError(f"PointCloud2 row_step {msg.row_step} < width * point_step {row}")
    raw = np.frombuffer(msg.data, dtype=np.uint8)
    if h == 0 or w == 0:
        return np.zeros(0, dtype=dt)
    if raw.size < msg.row_step * (h - 1) + row:  # the last row's padding may be missing
        raise MessageError(
            f"PointCloud2 has {raw.size} data bytes, expected {msg.row_step * h} "
            f"({h} rows of {msg.row_step})"
        )
    rows = [raw[r * msg.row_step : r * msg.row_step + row] for r in range(h)]
    body = rows[0] if h == 1 else np.concatenate(rows)
    return np.frombuffer(body.tobytes(), dtype=dt)


def cloud_xyz(msg: PointCloud2) -> np.ndarray:
    """[N, 3] float64 x y z of a PointCloud2."""
    pts = read_points(msg)
    return np.stack([pts["x"], pts["y"], pts["z"]], axis=-1).astype(np.float64)
