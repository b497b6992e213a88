"""Scene files: Inria-format 3DGS ``.ply`` and gsplat checkpoints.

Inria ``.ply`` (one ``vertex`` element, float32 in practice, any property order)::

    x y z  [nx ny nz]  f_dc_0..2  f_rest_0..M-1  opacity  scale_0..2  rot_0..3

``f_rest`` is stored channel-major: all red coefficients, then green, then blue, so it is
reshaped to [N, 3, K-1] and transposed to [N, K-1, 3]. ``opacity`` is a logit, ``scale_*``
are logs, ``rot_*`` is w x y z and need not be unit length. The header parser is our own
(binary little/big endian and ascii; char/uchar/short/ushort/int/uint/float/double), so
reading needs neither plyfile nor open3d.

gsplat checkpoint (``.pt``/``.pth``/``.ckpt``)::

    {"splats": {"means" [N,3], "quats" [N,4], "scales" [N,3] (log), "opacities" [N] (logit),
                "sh0" [N,1,3], "shN" [N,K-1,3]}, ...}

loaded with ``torch.load(weights_only=True)``; a bare dict of those keys is accepted too.

antimatter15 ``.splat`` files (32-byte records, lossy) are read by :mod:`gsbp_ros.scene_splat`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gsbp_ros.errors import SceneError
from gsbp_ros.fileio import atomic_write
from gsbp_ros.scene import GaussianScene

PLY_SUFFIXES = (".ply",)
CKPT_SUFFIXES = (".pt", ".pth", ".ckpt")
SPLAT_SUFFIXES = (".splat",)
SCENE_SUFFIXES = PLY_SUFFIXES + CKPT_SUFFIXES + SPLAT_SUFFIXES

# PLY scalar type names (both spellings of the spec) -> numpy type codes without byte order.
_PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}
_PLY_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
_MAX_HEADER_BYTES = 1 << 20
_REQUIRED = (
    ["x", "y", "z"]
    + [f"f_dc_{i}" for i in range(3)]
    + ["opacity"]
    + [f"scale_{i}" for i in range(3)]
    + [f"rot_{i}" for i in range(4)]
)
_MAX_SH_DEGREE = 4  # what GaussianScene accepts; Inria files go up to 3
_CKPT_KEYS = ("means", "quats", "scales", "opacities", "sh0", "shN")


# ---------------------------------------------------------------------------------------------
# public API


def load_scene(path: str | Path) -> GaussianScene:
    """Load a scene from an Inria ``.ply``, a gsplat checkpoint or a ``.splat``, by suffix.

    Returns float32 CPU tensors. Raises :class:`SceneError` with the file name and the reason
    for a missing, unreadable, malformed or non-finite scene.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SCENE_SUFFIXES:
        raise SceneError(
            f"{path}: unknown scene file type {path.suffix!r} "
            f"(expected .ply, .splat or a gsplat checkpoint .pt/.pth/.ckpt)"
        )
    if not path.is_file():
        raise SceneError(f"{path}: scene file not found")
    if suffix in PLY_SUFFIXES:
        fields = _read_ply(path)
    elif suffix in SPLAT_SUFFIXES:
        from gsbp_ros.scene_splat import read_splat

        fields = read_splat(path)
    else:
        fields = _read_checkpoint(path)
    try:
        return GaussianScene(**fields)
    except SceneError as e:
        raise SceneError(f"{path}: {e}") from None


def save_scene(scene: GaussianScene, path: str | Path) -> None:
    """Save ``scene`` as an Inria ``.ply`` (binary little endian float32, normals zero), a
    gsplat checkpoint or a (lossy) ``.splat``, chosen by suffix. Written atomically: a
    failure leaves no partial file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in PLY_SUFFIXES:
        _write_ply(scene, path)
    elif suffix in CKPT_SUFFIXES:
        _write_checkpoint(scene, path)
    elif suffix in SPLAT_SUFFIXES:
        from gsbp_ros.scene_splat import write_splat

        write_splat(scene, path)
    else:
        raise SceneError(
            f"{path}: unknown scene file type {path.suffix!r} "
            f"(expected .ply, .splat or a gsplat checkpoint .pt/.pth/.ckpt)"
        )


def ply_property_names(sh_degree: int) -> list[str]:
    """The standard Inria property order for a scene of this SH degree."""
    num_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (
        ["x", "y", "z", "nx", "ny", "nz"]
        + [f"f_dc_{i}" for i in range(3)]
        + [f"f_rest_{i}" for i in range(num_rest)]
        + ["opacity"]
        + [f"scale_{i}" for i in range(3)]
        + [f"rot_{i}" for i in range(4)]
    )


def is_splat_ply(path: str | Path) -> bool:
    """True when ``path`` is a PLY file whose vertices carry 3DGS properties (x, f_dc_0,
    opacity, scale_0, rot_0): tells a splat from the sparse point clouds (``input.ply``,
    ``sparse_pc.ply``, ``points3D.ply``) that training folders hold beside it."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            _, elements, _ = _parse_header(path, f)
    except (OSError, SceneError):
        return False
    vertex = next((e for e in elements if e.name == "vertex"), None)
    names = {name for name, _ in vertex.props} if vertex is not None else set()
    return {"x", "f_dc_0", "opacity", "scale_0", "rot_0"} <= names


# ---------------------------------------------------------------------------------------------
# PLY reading


class _Element:
    def __init__(self, name: str, count: int) -> None:
        self.name = name
        self.count = count
        self.props: list[tuple[str, str]] = []  # (name, numpy type code)
        self.has_list = False


def _parse_header(path: Path, f) -> tuple[str, list[_Element], int]:
    """Returns (format, elements, header length in bytes)."""
    first = f.readline(16)
    if first.rstrip(b"\r\n") != b"ply":
        raise SceneError(f"{path}: not a PLY file (it does not start with 'ply')")
    fmt = None
    elements: list[_Element] = []
    while True:
        line = f.readline(4096)
        if not line:
            raise SceneError(f"{path}: PLY header has no 'end_header' line")
        if f.tell() > _MAX_HEADER_BYTES:
            raise SceneError(f"{path}: PLY header longer than 1 MiB; the file is malformed")
        words = line.decode("ascii", errors="replace").split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        key = words[0]
        if key == "end_header":
            break
        if key == "format":
            if len(words) < 2 or words[1] not in _PLY_FORMATS:
                raise SceneError(f"{path}: unsupported PLY format line {line.strip()!r}")
            fmt = words[1]
        elif key == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise SceneError(f"{path}: malformed PLY element line {line.strip()!r}")
            elements.append(_Element(words[1], int(words[2])))
        elif key == "property":
            if not elements:
                raise SceneError(f"{path}: PLY property before any element")
            el = elements[-1]
            if len(words) == 5 and words[1] == "list":
                el.has_list = True
                el.props.append((words[4], "list"))
            elif len(words) == 3 and words[1] in _PLY_TYPES:
                if any(name == words[2] for name, _ in el.props):
                    raise SceneError(f"{path}: PLY property {words[2]!r} is declared twice")
                el.props.append((words[2], _PLY_TYPES[words[1]]))
            else:
                raise SceneError(f"{path}: unsupported PLY property line {line.strip()!r}")
        else:
            raise SceneError(f"{path}: unknown PLY header line {line.strip()!r}")
    if fmt is None:
        raise SceneError(f"{path}: PLY header has no 'format' line")
    return fmt, elements, f.tell()


def _read_ply(path: Path) -> dict[str, Tensor]:
    with open(path, "rb") as f:
        fmt, elements, header_len = _parse_header(path, f)
        vertex = next((e for e in elements if e.name == "vertex"), None)
        if vertex is None:
            raise SceneError(f"{path}: PLY file has no 'vertex' element")
        if vertex.count == 0:
            raise SceneError(f"{path}: PLY file has zero vertices (an empty scene)")
        if vertex.has_list:
            raise SceneError(f"{path}: PLY vertex element has list properties; not a 3DGS file")
        names = {name for name, _ in vertex.props}
        missing = [n for n in _REQUIRED if n not in names]
        if missing:
            raise SceneError(
                f"{path}: PLY vertex element lacks 3DGS properties {', '.join(missing)}"
            )
        before = elements[: elements.index(vertex)]
        if fmt == "ascii":
            columns = _read_ascii_vertices(path, f, before, vertex)
        else:
            columns = _read_binary_vertices(path, f, _PLY_FORMATS[fmt], before, vertex, header_len)
    return _fields_from_columns(path, columns, vertex)


def _read_binary_vertices(path, f, order, before, vertex, header_len) -> np.ndarray:
    offset = header_len
    for el in before:
        if el.has_list:
            raise SceneError(
                f"{path}: PLY element {el.name!r} with list properties precedes 'vertex'"
            )
        offset += el.count * np.dtype([(n, order + t) for n, t in el.props]).itemsize
    dtype = np.dtype([(n, order + t) for n, t in vertex.props])
    need = offset + vertex.count * dtype.itemsize
    size = path.stat().st_size
    if size < need:
        raise SceneError(
            f"{path}: truncated PLY: the header promises {vertex.count} vertices "
            f"({need} bytes) but the file has {size} bytes"
        )
    f.seek(offset)
    return np.fromfile(f, dtype=dtype, count=vertex.count)


def _read_ascii_vertices(path, f, before, vertex) -> np.ndarray:
    text = f.read().decode("ascii", errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    skip = sum(el.count for el in before)
    rows = lines[skip : skip + vertex.count]
    if len(rows) < vertex.count:
        raise SceneError(
            f"{path}: truncated PLY: the header promises {vertex.count} vertices "
            f"but the file has {len(rows)} vertex lines"
        )
    nprops = len(vertex.props)
    tokens = [row.split() for row in rows]
    bad = next((i for i, t in enumerate(tokens) if len(t) != nprops), None)
    if bad is not None:
        raise SceneError(
            f"{path}: PLY vertex {bad} has {len(tokens[bad])} values, expected {nprops}"
        )
    try:
        values = np.array(tokens, dtype=np.float64).reshape(vertex.count, nprops)
    except ValueError as e:
        raise SceneError(f"{path}: PLY vertex data is not numeric: {e}") from None
    dtype = np.dtype([(n, "f8") for n, _ in vertex.props])
    out = np.empty(vertex.count, dtype=dtype)
    for i, (n, _) in enumerate(vertex.props):
        out[n] = values[:, i]
    return out


def _fields_from_columns(path: Path, data: np.ndarray, vertex: _Element) -> dict[str, Tensor]:
    def cols(names: list[str]) -> Tensor:
        arr = np.stack([np.asarray(data[n], dtype=np.float32) for n in names], axis=1)
        return torch.from_numpy(np.ascontiguousarray(arr))

    rest_idx = sorted(
        int(m.group(1)) for n, _ in vertex.props if (m := re.fullmatch(r"f_rest_(\d+)", n))
    )
    num_rest = len(rest_idx)
    if rest_idx != list(range(num_rest)):
        raise SceneError(f"{path}: f_rest_* properties are not numbered 0..{num_rest - 1}")
    valid = [3 * ((d + 1) ** 2 - 1) for d in range(_MAX_SH_DEGREE + 1)]
    if num_rest not in valid:
        raise SceneError(
            f"{path}: {num_rest} f_rest_* properties match no SH degree "
            f"(expected one of {valid} for degree 0..{_MAX_SH_DEGREE})"
        )
    n = len(data)
    dc = cols([f"f_dc_{i}" for i in range(3)]).reshape(n, 1, 3)
    if num_rest:
        rest = cols([f"f_rest_{i}" for i in range(num_rest)])
        # channel-major on disk: [N, 3, K-1] -> [N, K-1, 3]
        rest = rest.reshape(n, 3, num_rest // 3).transpose(1, 2)
        sh = torch.cat([dc, rest], dim=1).contiguous()
    else:
        sh = dc
    return {
        "means": cols(["x", "y", "z"]),
        "quats": cols([f"rot_{i}" for i in range(4)]),
        "log_scales": cols([f"scale_{i}" for i in range(3)]),
        "logit_opacities": cols(["opacity"]).reshape(n),
        "sh": sh,
    }


# ---------------------------------------------------------------------------------------------
# PLY writing


def _ply_header(names: list[str], n: int) -> bytes:
    lines = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    lines += [f"property float {name}" for name in names]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii")


def _ply_body(scene: GaussianScene) -> bytes:
    """[N, P] float32 little-endian rows in :func:`ply_property_names` order."""
    n = scene.num_gaussians
    sh = scene.sh.detach().cpu().float()
    rest = sh[:, 1:, :].transpose(1, 2).reshape(n, -1)  # channel-major, see module docstring
    table = torch.cat(
        [
            scene.means.detach().cpu().float(),
            torch.zeros(n, 3),
            sh[:, 0, :],
            rest,
            scene.logit_opacities.detach().cpu().float().reshape(n, 1),
            scene.log_scales.detach().cpu().float(),
            scene.quats.detach().cpu().float(),
        ],
        dim=1,
    )
    return table.numpy().astype("<f4", copy=False).tobytes()


def _write_ply(scene: GaussianScene, path: Path) -> None:
    names = ply_property_names(scene.sh_degree)
    with atomic_write(path, "wb") as f:
        f.write(_ply_header(names, scene.num_gaussians))
        f.write(_ply_body(scene))


# ---------------------------------------------------------------------------------------------
# gsplat checkpoints


def _read_checkpoint(path: Path) -> dict[str, Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types (UnpicklingError, RuntimeError, EOFError)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SceneError(
            f"{path}: cannot load as a gsplat checkpoint with weights_only=True: {first}"
        ) from None
    if not isinstance(obj, dict):
        raise SceneError(
            f"{path}: checkpoint holds a {type(obj).__name__}, expected a dict with 'splats'"
        )
    splats = obj.get("splats", obj)
    if not isinstance(splats, dict):
        raise SceneError(f"{path}: checkpoint 'splats' is a {type(splats).__name__}, not a dict")
    required = [k for k in _CKPT_KEYS if k != "shN"]
    missing = [k for k in required if k not in splats]
    if missing:
        raise SceneError(
            f"{path}: checkpoint lacks splats {', '.join(missing)} "
            f"(expected {{'splats': {{{', '.join(_CKPT_KEYS)}}}}})"
        )
    for k in _CKPT_KEYS:
        if k in splats and not isinstance(splats[k], Tensor):
            raise SceneError(f"{path}: checkpoint splats[{k!r}] is not a tensor")
    t = {k: splats[k].detach().cpu().float() for k in _CKPT_KEYS if k in splats}
    n = t["means"].shape[0] if t["means"].ndim == 2 else -1
    opac = t["opacities"]
    if opac.ndim == 2 and opac.shape[1] == 1:
        opac = opac[:, 0]
    sh0 = t["sh0"]
    if sh0.ndim == 2 and sh0.shape[1] == 3:
        sh0 = sh0[:, None, :]
    if sh0.ndim != 3 or sh0.shape[1:] != (1, 3):
        raise SceneError(f"{path}: checkpoint sh0 must be [N, 1, 3], got {list(sh0.shape)}")
    shn = t.get("shN", torch.zeros(sh0.shape[0], 0, 3))
    if shn.ndim != 3 or shn.shape[0] != sh0.shape[0] or shn.shape[2] != 3:
        raise SceneError(f"{path}: checkpoint shN must be [N, K-1, 3], got {list(shn.shape)}")
    if n == 0:
        raise SceneError(f"{path}: checkpoint has zero Gaussians")
    return {
        "means": t["means"],
        "quats": t["quats"],
        "log_scales": t["scales"],
        "logit_opacities": opac,
        "sh": torch.cat([sh0, shn], dim=1).contiguous(),
    }


def _write_checkpoint(scene: GaussianScene, path: Path) -> None:
    # clone(): torch.save of a slice would store the whole underlying storage
    splats = {
        "means": scene.means.detach().cpu().clone(),
        "quats": scene.quats.detach().cpu().clone(),
        "scales": scene.log_scales.detach().cpu().clone(),
        "opacities": scene.logit_opacities.detach().cpu().clone(),
        "sh0": scene.sh[:, :1, :].detach().cpu().clone(),
        "shN": scene.sh[:, 1:, :].detach().cpu().clone(),
    }
    with atomic_write(path, "wb") as f:
        torch.save({"splats": splats}, f)
