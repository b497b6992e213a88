"""FeatureField: per-Gaussian features of one or more sources, stored as safetensors.

File layout (safetensors, never pickle):
    features / weight                   the source named "default" (the CLI contract)
    features.<name> / weight.<name>     every other source
    viewpoints                          optional [N, 3]
    metadata["gsbp"]                    JSON: per-source metadata and the cache key
    metadata["gsbp_digest"]             "blake3:<hex>" (or "sha256:<hex>") of the metadata
                                        and every tensor (name, dtype, shape, bytes),
                                        checked on load

The digest makes edits that keep the file readable visible (two label channels swapped, a
tensor rewritten, the metadata changed): :meth:`FeatureField.load` refuses such a file and the
cache rebuilds it. It is an integrity check, not a signature: whoever can write the cache
folder can also write a matching digest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from gsbp_ros.camera import Camera
from gsbp_ros.errors import FeatureError
from gsbp_ros.fileio import atomic_path, remove_stale_temp_files, sha256_file

log = logging.getLogger(__name__)

FORMAT_VERSION = "3"  # 2: viewpoints; 3: digest
DEFAULT = "default"
DIGEST_KEY = "gsbp_digest"


@dataclass
class FeatureField:
    """Per-Gaussian features.

    Attributes:
        features: source name -> [N, C] float32.
        weights: source name -> [N] float32 Σ w (0 = never seen by that source).
        meta: JSON-serialisable metadata (per-source model ids, parameters, cache key).
        viewpoints: [N, 3] float32 weight-averaged position of the cameras that saw each
            Gaussian (zeros where none did), or None; orients surface normals outward.
    """

    features: dict[str, Tensor]
    weights: dict[str, Tensor]
    meta: dict = field(default_factory=dict)
    viewpoints: Tensor | None = None

    def __post_init__(self) -> None:
        if set(self.features) != set(self.weights):
            raise FeatureError("feature field: features and weights name different sources")
        sizes = {t.shape[0] for t in self.features.values()} | {
            t.shape[0] for t in self.weights.values()
        }
        if len(sizes) > 1:
            raise FeatureError(f"feature field: sources disagree on the Gaussian count {sizes}")
        for name, t in self.features.items():
            if t.ndim != 2 or self.weights[name].ndim != 1:
                raise FeatureError(f"feature field: source {name!r} must be [N, C] with [N] weight")
        if self.viewpoints is not None and (
            self.viewpoints.ndim != 2
            or self.viewpoints.shape[1] != 3
            or (sizes and self.viewpoints.shape[0] not in sizes)
        ):
            raise FeatureError(
                f"feature field: viewpoints must be [N, 3], got {list(self.viewpoints.shape)}"
            )

    @property
    def num_gaussians(self) -> int:
        return next(iter(self.features.values())).shape[0]

    @property
    def sources(self) -> list[str]:
        return list(self.features)

    def seen(self, name: str) -> Tensor:
        """[N] bool: Gaussians that the source's views saw at all."""
        return self.weights[name] > 0

    # -- storage ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write atomically as safetensors."""
        from safetensors.torch import save_file

        tensors: dict[str, Tensor] = {}
        for name in self.features:
            suffix = "" if name == DEFAULT else f".{name}"
            tensors[f"features{suffix}"] = self.features[name].contiguous().to(torch.float32)
            tensors[f"weight{suffix}"] = self.weights[name].contiguous().to(torch.float32)
        if self.viewpoints is not None:
            tensors["viewpoints"] = self.viewpoints.contiguous().to(torch.float32)
        meta_json = json.dumps({"version": FORMAT_VERSION, **self.meta}, sort_keys=True)
        meta = {"gsbp": meta_json, DIGEST_KEY: field_digest(tensors, meta_json)}
        # save_file streams the tensors to disk; safetensors' save() would first build the
        # whole file as one bytes object (as large as the field itself).
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)

    @classmethod
    def load(cls, path: str | Path, *, require_digest: bool = False) -> FeatureField:
        """Read a field written by :meth:`save`; FeatureError on anything malformed.

        A stored digest is always checked (a mismatch raises); ``require_digest`` also
        refuses files without one (written by another program or an older version)."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise FeatureError(f"feature field {path} does not exist")
        with ThreadPoolExecutor(max_workers=_digest_threads()) as pool:
            try:
                with safe_open(str(path), framework="pt") as f:
                    header = f.metadata() or {}
                    stored = header.get(DIGEST_KEY)
                    if stored is None and require_digest:
                        raise FeatureError(
                            f"feature field {path} has no digest (written elsewhere or older)"
                        )
                    # Hashed in the pool while the next tensor loads and values are checked.
                    digest = (
                        _Digest(header.get("gsbp", ""), pool, stored.partition(":")[0])
                        if stored
                        else None
                    )
                    tensors = {}
                    for k in f.keys():  # noqa: SIM118
                        tensors[k] = f.get_tensor(k)
                        if digest is not None:
                            digest.add(k, tensors[k])
            except (SafetensorError, ValueError, OSError, RuntimeError) as exc:
                raise FeatureError(
                    f"feature field {path} is not a valid safetensors file: {exc}"
                ) from exc
            nonfinite = _nonfinite(path, tensors)
            if digest is not None and stored != digest.hexdigest():
                raise FeatureError(
                    f"feature field {path}: its data does not match its digest (edited or corrupt)"
                )
        if nonfinite:
            raise FeatureError(nonfinite)
        try:
            meta = json.loads(header.get("gsbp", "{}"))
        except json.JSONDecodeError as exc:
            raise FeatureError(f"feature field {path} has corrupt metadata: {exc}") from exc
        if not isinstance(meta, dict):
            raise FeatureError(f"feature field {path} has corrupt metadata: not a JSON object")
        features: dict[str, Tensor] = {}
        weights: dict[str, Tensor] = {}
        for key, t in tensors.items():
            if key == "viewpoints":
                continue
            kind, _, name = key.partition(".")
            name = name or DEFAULT
            if kind == "features":
                features[name] = t
            elif kind == "weight":
                weights[name] = t
        if not features:
            raise FeatureError(f"feature field {path} holds no 'features' tensor")
        viewpoints = tensors.get("viewpoints")
        meta.pop("version", None)
        return cls(features=features, weights=weights, meta=meta, viewpoints=viewpoints)


def field_digest(tensors: Mapping[str, Tensor], meta_json: str, algorithm: str = "") -> str:
    """``"<algorithm>:<hex>"`` of the metadata JSON and of every tensor: its name, dtype,
    shape and bytes (see :class:`_Digest`). ``algorithm``: blake3 or sha256; '' = the
    fastest available."""
    with ThreadPoolExecutor(max_workers=_digest_threads()) as pool:
        digest = _Digest(meta_json, pool, algorithm or _algorithms()[0])
        for name, t in tensors.items():
            digest.add(name, t)
        return digest.hexdigest()


class _Digest:
    """:func:`field_digest` fed one tensor at a time: each tensor is hashed in the pool's
    threads while the caller goes on (loading the next tensor, checking values).

    The tensors' bytes are hashed with BLAKE3 where the ``blake3`` package is installed (about
    5 GB/s per core, multi-threaded) and SHA-256 otherwise (about 1.2 GB/s); the result is
    SHA-256 of the metadata, each tensor's name, dtype, shape and length, and those hashes.
    """

    def __init__(self, meta_json: str, pool: ThreadPoolExecutor, algorithm: str) -> None:
        if algorithm not in _algorithms():
            raise FeatureError(f"digest algorithm {algorithm!r} is not available here")
        self.algorithm = algorithm
        self._meta = meta_json.encode()
        self._pool = pool
        self._parts: dict[str, tuple[bytes, object, Tensor]] = {}

    def add(self, name: str, tensor: Tensor) -> None:
        t = tensor.detach().cpu().contiguous()
        raw = memoryview(t.numpy()).cast("B") if t.numel() else memoryview(b"")
        head = f"\0{name}\0{t.dtype}\0{list(t.shape)}\0{len(raw)}".encode()
        self._parts[name] = (head, self._pool.submit(_leaf_hash, self.algorithm, raw), t)

    def hexdigest(self) -> str:
        h = hashlib.sha256(self._meta)
        names = sorted(self._parts)
        for name in names:
            h.update(self._parts[name][0])
        for name in names:
            h.update(self._parts[name][1].result())
        return f"{self.algorithm}:{h.hexdigest()}"


def _algorithms() -> tuple[str, ...]:
    """Digest algorithms available here, preferred first."""
    return ("blake3", "sha256") if _blake3() is not None else ("sha256",)


def _blake3():
    try:
        import blake3
    except ImportError:
        return None
    return blake3


def _leaf_hash(algorithm: str, raw: memoryview) -> bytes:
    if algorithm == "blake3":
        b3 = _blake3()
        return b3.blake3(raw, max_threads=b3.blake3.AUTO).digest()
    return hashlib.sha256(raw).digest()


def _digest_threads() -> int:
    try:
        return max(1, min(8, len(os.sched_getaffinity(0))))
    except AttributeError:  # not Linux
        return max(1, min(8, os.cpu_count() or 1))


def _nonfinite(path: Path, tensors: Mapping[str, Tensor]) -> str:
    """Why the loaded tensors cannot be used ('' when all values are finite)."""
    for key in sorted(tensors):
        if tensors[key].is_floating_point() and not torch.isfinite(tensors[key]).all():
            kind, _, name = key.partition(".")
            what = "viewpoints" if kind == "viewpoints" else f"source {name or DEFAULT!r}"
            return f"feature field {path}: {what} has NaN or Inf"
    return ""


def cameras_digest(cameras: Sequence[Camera]) -> str:
    """Hash of the cameras' names, sizes, intrinsics and poses (not of the file they came from)."""
    h = hashlib.sha256()
    for cam in cameras:
        h.update(f"{cam.name}|{cam.width}|{cam.height}|".encode())
        h.update(cam.K.detach().cpu().to(torch.float64).numpy().tobytes())
        h.update(cam.world_to_cam.detach().cpu().to(torch.float64).numpy().tobytes())
    return h.hexdigest()


def cache_key(
    *,
    scene_path: str | Path,
    cameras: Sequence[Camera],
    sources: Mapping[str, object],
    params: Mapping[str, object],
) -> str:
    """Key that changes whenever anything that shapes the field changes.

    The scene file's bytes, the cameras, each source's model id and revision or weight hash
    (``source.cache_key()``) and the back-projection parameters.
    """
    doc = {
        "format": FORMAT_VERSION,
        "scene": sha256_file(scene_path),
        "cameras": cameras_digest(cameras),
        "sources": {
            name: (s.cache_key() if hasattr(s, "cache_key") else {}) for name, s in sources.items()
        },
        "params": {k: str(v) for k, v in params.items()},
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def load_or_build(
    cache_dir: str | Path | None,
    key: str,
    build: Callable[[], FeatureField],
    *,
    expected_sources: Sequence[str] | None = None,
    num_gaussians: int | None = None,
    warn: Callable[[str], None] | None = None,
) -> tuple[FeatureField, bool]:
    """Return the cached field for ``key`` or build, cache and return it.

    A cache file that cannot be read, fails its digest, has another key, or does not match
    the scene is rebuilt (and overwritten), never trusted; ``warn`` (default: this module's
    logger) gets one line saying why. Temporary files that killed writers left in the cache
    folder are removed first. Returns (field, cache_hit).
    """
    if not cache_dir:
        return build(), False
    warn = warn or log.warning
    for stale in remove_stale_temp_files(cache_dir):
        log.info("removed %s, left by an interrupted cache write", stale)
    path = Path(cache_dir) / f"field-{key[:24]}.safetensors"
    if path.exists():
        try:
            cached = FeatureField.load(path, require_digest=True)
            problem = _cache_problem(cached, key, expected_sources, num_gaussians)
        except FeatureError as exc:
            problem = str(exc)
        if problem is None:
            log.info("feature cache hit: %s", path)
            return cached, True
        warn(f"ignoring feature cache {path} ({problem}); rebuilding")
    result = build()
    result.meta["cache_key"] = key
    try:
        result.save(path)
    except OSError as exc:
        warn(f"could not write feature cache {path}: {exc}")
    return result, False


def _cache_problem(
    cached: FeatureField,
    key: str,
    expected_sources: Sequence[str] | None,
    num_gaussians: int | None,
) -> str | None:
    if cached.meta.get("cache_key") != key:
        return "its key does not match"
    if expected_sources is not None and set(cached.sources) != set(expected_sources):
        return f"it holds sources {cached.sources}, expected {list(expected_sources)}"
    if num_gaussians is not None and cached.num_gaussians != num_gaussians:
        return f"it has {cached.num_gaussians} Gaussians, the scene has {num_gaussians}"
    return None
