"""GsbpEngine: the ROS-free service core that a node (or any other front end) drives.

It owns the scene, the feature sources and the feature field, builds the field at start-up
(or loads it from the cache), and answers queries. Every public method is thread-safe:
queries take one lock, status reads take another, so a status poll never waits for a query.
Bad input raises :class:`gsbp_ros.errors.GsbpError` subclasses with a one-line message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from gsbp_ros.camera import Camera
from gsbp_ros.errors import FeatureError, GsbpError, QueryError
from gsbp_ros.field import FeatureField
from gsbp_ros.limits import RequestLimits
from gsbp_ros.raster.options import RasterOptions
from gsbp_ros.results import GraspSet, Labelling, Selection
from gsbp_ros.scene import SH_C0, GaussianScene

if TYPE_CHECKING:
    from gsbp_ros.grasps import GraspOptions
    from gsbp_ros.gripper import ParallelJawGripper

log = logging.getLogger(__name__)


class NotReadyError(GsbpError):
    """The engine is still loading or back-projecting (or failed to start)."""


@dataclass
class EngineConfig:
    """Everything the engine needs; the node fills it from its parameters.

    ``scene_path`` may be a scene file or a training output folder, ``cameras_path`` empty
    (cameras next to the scene, else orbit views), ``"orbit"`` or a camera file/folder, and
    ``images_dir`` empty (photos found next to the cameras), ``"none"`` or a folder: see
    :mod:`gsbp_ros.captures`. ``cameras_transform`` applies after the capture's own frame
    transform (a splatfacto export's dataparser transform).
    """

    scene_path: str
    cameras_path: str = ""
    # 16 numbers, row-major 4x4 similarity applied to the loaded camera poses (empty = none):
    # the transform gsplat's parser used when training with normalize_world_space=True.
    cameras_transform: list[float] = field(default_factory=list)
    device: str = "auto"
    feature_sources: list[str] = field(default_factory=lambda: ["dinov2", "clip", "labels"])
    dinov2_model: str = "facebook/dinov2-small"
    clip_model: str = "openai/clip-vit-base-patch16"
    label_maps_dir: str = ""
    label_names: list[str] = field(default_factory=list)
    # What unlabelled label-map pixels vote for: "background" or "ignore" (no vote).
    label_unlabelled: str = "background"
    cache_dir: str = ""
    max_views: int = 0
    render_scale: float = 1.0
    num_generated_views: int = 24
    generated_view_size: int = 256
    mode: str = "expected"
    feature_input_size: int = 448
    output_dir: str = "/tmp/gsbp"
    canonical_negatives: bool = True
    default_k: int = 5
    engine: str = "auto"
    # How the scene was trained to be rasterized (planes, eps2d, classic/antialiased): every
    # weight computation uses it and it is part of the feature-field cache key.
    raster: RasterOptions = field(default_factory=RasterOptions)
    # Memory bound of the raster engine per view: (Gaussian, pixel) pairs held at once
    # (0 = the engine's default, ~200 MB).
    max_pairs: int = 0
    # Real photos as the input of DINOv2/CLIP: "" = found next to the cameras, "none" = renders.
    images_dir: str = ""
    # Let hub model ids download when not in the local cache (off: fail fast offline).
    allow_downloads: bool = False


@dataclass
class EngineStatus:
    state: str = "idle"  # idle | loading | backprojecting | ready | failed
    # What start-up is doing now, in words ("loading scene", "loading models (dinov2, clip)",
    # "back-projecting 3/24 views", ...); "ready" or "failed" at the end.
    phase: str = "not started"
    views_done: int = 0
    views_total: int = 0
    eta_s: float | None = None
    message: str = "not started"
    active_sources: list[str] = field(default_factory=list)
    inactive_sources: dict[str, str] = field(default_factory=dict)
    num_gaussians: int = 0
    startup_s: float | None = None
    cache_hit: bool = False
    seen_fraction: float | None = None  # Gaussians seen by the views (weight > 0), once built


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise GsbpError("device 'cuda' was requested but CUDA is not available here")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise GsbpError(f"device must be auto, cpu or cuda, got {device!r}")
    return torch.device(device)


def select_views(cameras: Sequence[Camera], max_views: int) -> list[Camera]:
    """At most ``max_views`` cameras spread evenly over the list (0 = all)."""
    if max_views <= 0 or len(cameras) <= max_views:
        return list(cameras)
    idx = np.linspace(0, len(cameras) - 1, max_views).round().astype(int)
    return [cameras[i] for i in sorted(set(idx.tolist()))]


class GsbpEngine:
    def __init__(
        self, config: EngineConfig, *, log: Callable[[str], None] = print, logger=None
    ) -> None:
        """``log`` gets every message as one line (warnings prefixed "warning: "); a
        ``logger`` (anything with info / warning / error methods: a logging.Logger, a ROS
        node's logger) gets each at its level instead."""
        self.config = config
        self._log = log if logger is None else logger.info
        self._warn = (lambda m: log(f"warning: {m}")) if logger is None else logger.warning
        self._error = log if logger is None else logger.error
        self._status = EngineStatus()
        self._status_lock = threading.Lock()
        self._lock = threading.RLock()
        self.scene: GaussianScene | None = None
        self.cameras: list[Camera] = []
        self.sources: dict[str, object] = {}
        self.field: FeatureField | None = None
        self.device = torch.device("cpu")
        self.last_selection: Selection | None = None
        # Per-request bounds (gsbp_ros.limits); the node sets them from its parameters.
        self.limits = RequestLimits()
        self._kdtree = None  # of the scene's means, for the point prompts' distance check
        self.capture = None  # gsbp_ros.captures.Capture once start-up resolved the paths
        # Device copies made once at start-up: per-request transfers of an [N, C] field
        # would dominate query latency on a GPU.
        self._scene_dev: GaussianScene | None = None
        self._features: dict[str, torch.Tensor] = {}
        self._weights: dict[str, torch.Tensor] = {}
        self._collision: tuple | None = None  # (options key, grasps.CollisionModel)

    # -- status -------------------------------------------------------------------------------
    def status(self) -> EngineStatus:
        with self._status_lock:
            s = self._status
            return EngineStatus(**{**s.__dict__, "inactive_sources": dict(s.inactive_sources)})

    def _set(self, **kw: object) -> None:
        with self._status_lock:
            for k, v in kw.items():
                setattr(self._status, k, v)

    def check_ready(self) -> None:
        s = self.status()
        if s.state == "ready":
            return
        if s.state == "backprojecting":
            raise NotReadyError(
                f"not ready: back-projecting {s.views_done}/{s.views_total} views"
                + (f" (ETA {s.eta_s:.0f} s)" if s.eta_s is not None and s.views_done else "")
            )
        if s.state == "failed":
            raise NotReadyError(f"not ready: start-up failed: {s.message}")
        raise NotReadyError(f"not ready: {s.message}")

    # -- start-up -----------------------------------------------------------------------------
    def start(self) -> None:
        """Load everything and build the field. Blocking; failures end in state 'failed'."""
        t0 = time.monotonic()
        try:
            self._start()
        except GsbpError as exc:
            self._set(state="failed", phase="failed", message=str(exc))
            self._error(f"start-up failed: {exc}")
            return
        except Exception as exc:  # a node must survive anything start-up throws
            log.exception("start-up failed")
            msg = f"internal error: {type(exc).__name__}: {exc}"
            self._set(state="failed", phase="failed", message=msg)
            self._error(f"start-up failed: {type(exc).__name__}: {exc}")
            return
        self._set(
            state="ready",
            phase="ready",
            message="ready",
            startup_s=time.monotonic() - t0,
            eta_s=0.0,
        )
        s = self.status()
        inactive = "; ".join(f"{k}: {v}" for k, v in s.inactive_sources.items())
        if s.active_sources:
            self._log(
                f"ready in {s.startup_s:.1f} s: {s.num_gaussians} Gaussians, sources "
                f"{', '.join(s.active_sources)}" + (f"; inactive: {inactive}" if inactive else "")
            )
        else:
            self._warn(
                f"scene loaded in {s.startup_s:.1f} s but no feature source is active "
                f"({inactive or 'feature_sources is empty'}): only save_region can be served"
            )

    def _phase(self, phase: str, state: str = "loading") -> None:
        """Say what start-up does now (status, "not ready" answers, diagnostics)."""
        self._set(state=state, phase=phase, message=phase)

    def _start(self) -> None:
        from gsbp_ros.backproject import backproject
        from gsbp_ros.cameras import cameras_for_scene, transform_cameras
        from gsbp_ros.captures import find_capture
        from gsbp_ros.field import cache_key, load_or_build

        cfg = self.config
        self._phase(f"loading scene {cfg.scene_path}")
        _remove_stale_outputs(cfg.output_dir, self._log)
        self.device = resolve_device(cfg.device)
        capture = find_capture(cfg.scene_path, cfg.cameras_path, cfg.images_dir)
        self.capture = capture
        self._phase(f"loading scene {capture.scene_file}")
        self.scene = capture.load_scene()
        self._scene_dev = self.scene.to(self.device)
        self._set(num_gaussians=self.scene.num_gaussians)
        self._phase(f"loading cameras {capture.cameras_path or '(orbit views)'}")
        transform = _world_transform(cfg)
        cams = capture.load_cameras()
        if cams is None:
            s = cfg.generated_view_size
            cams = cameras_for_scene(
                self.scene, num_views=cfg.num_generated_views, width=s, height=s
            )
        elif transform is not None:
            cams = transform_cameras(cams, transform)
        self.cameras = select_views(cams, cfg.max_views)
        for line in capture.describe(photos=False):
            self._log(line)
        from gsbp_ros.raster import engine_report

        self._log(
            f"scene: {self.scene.num_gaussians} Gaussians; {len(self.cameras)} views; "
            f"device {self.device}; raster engine "
            f"{engine_report(cfg.engine, self.device)}"
        )
        self._load_sources()
        photos = self._attach_photos(capture)
        if not self.sources:
            self._set(active_sources=[], message="no feature source is active")
            return
        total = len(self.cameras)
        self._phase(f"rendering and back-projecting 0/{total} views", state="backprojecting")
        self._set(views_total=total, views_done=0)
        last_log = [0.0]

        def progress(done: int, total: int, eta: float | None) -> None:
            phase = f"back-projecting {done}/{total} views"
            self._set(views_done=done, views_total=total, eta_s=eta, phase=phase, message=phase)
            now = time.monotonic()
            if now - last_log[0] > 2.0 or done == total:
                last_log[0] = now
                self._log(f"back-projecting: {done}/{total} views, ETA {eta or 0:.0f} s")

        params = {
            "mode": cfg.mode,
            "render_scale": cfg.render_scale,
            "feature_input_size": cfg.feature_input_size,
            **cfg.raster.cache_key(),
        }
        key = cache_key(
            scene_path=capture.scene_file,
            cameras=self.cameras,
            sources=self.sources,
            params=params,
        )

        def build() -> FeatureField:
            return backproject(
                self.scene,
                self.cameras,
                self.sources,
                mode=cfg.mode,
                device=self.device,
                engine=cfg.engine,
                options=cfg.raster,
                max_pairs=cfg.max_pairs or None,
                render_scale=cfg.render_scale,
                progress=progress,
            )

        self.field, hit = load_or_build(
            cfg.cache_dir or None,
            key,
            build,
            expected_sources=list(self.sources),
            num_gaussians=self.scene.num_gaussians,
            warn=self._warn,
        )
        self._warn_if_unseen()
        self._features = {k: v.to(self.device) for k, v in self.field.features.items()}
        self._weights = {k: v.to(self.device) for k, v in self.field.weights.items()}
        self._set(cache_hit=hit, views_done=total)
        if hit:
            self._log(f"loaded feature field from cache ({cfg.cache_dir})")
        elif photos is not None:
            used, rendered = photos.counts()
            self._log(f"feature input: {used} photos, {rendered} renders (views without a photo)")

    def _attach_photos(self, capture) -> object | None:
        """Give the active DINOv2/CLIP sources the views' photos (instead of their renders);
        returns the PhotoSet, or None when they run on renders."""
        from gsbp_ros.photos import PhotoSet

        image_sources = [s for n, s in self.sources.items() if n in ("dinov2", "clip")]
        if not image_sources:
            return None
        if capture.images_dir is None:
            self._log(f"photos: none ({capture.images_note or 'features from renders'})")
            return None
        self._phase(f"matching photos in {capture.images_dir}")
        photos = PhotoSet(capture.images_dir, self.cameras)
        if not photos.paths and capture.images_given:
            example = self.cameras[0].name if self.cameras else "?"
            raise FeatureError(
                f"images folder {capture.images_dir} has no photo of any of the "
                f"{len(self.cameras)} views (e.g. none named like {example!r})"
            )
        self._log(f"photos: {photos.summary()} ({capture.images_note})")
        if not photos.paths:
            return None
        for source in image_sources:
            source.photos = photos
        return photos

    def _warn_if_unseen(self) -> None:
        """Most Gaussians unseen is the signature of cameras in another frame than the splats
        (e.g. a gsplat checkpoint trained with normalize_world_space=True, raw COLMAP poses)."""
        seen = torch.zeros(self.scene.num_gaussians, dtype=torch.bool)
        for w in self.field.weights.values():
            seen |= w.cpu() > 0
        fraction = float(seen.float().mean())
        self._set(seen_fraction=fraction)
        if fraction < 0.5:
            self._warn(
                f"the views saw only {100 * fraction:.0f}% of the Gaussians; if the "
                "scene is a gsplat checkpoint trained with normalize_world_space=True, its "
                "cameras must be transformed the same way (see gsbp_ros/cameras.py); a "
                "splatfacto export needs its dataparser_transforms.json next to the .ply"
            )

    def _load_sources(self) -> None:
        from gsbp_ros.features import make_source

        cfg = self.config
        inactive: dict[str, str] = {}
        models = {"dinov2": cfg.dinov2_model, "clip": cfg.clip_model}
        wanted = [n for n in cfg.feature_sources if n in models]
        if wanted:
            self._phase(f"loading models ({', '.join(wanted)})")
        for name in cfg.feature_sources:
            try:
                if name in models:
                    options = {
                        "model": models[name],
                        "input_size": cfg.feature_input_size,
                        "device": self.device,
                        "allow_downloads": cfg.allow_downloads,
                    }
                elif name == "labels":
                    if not cfg.label_maps_dir or not cfg.label_names:
                        raise FeatureError("label_maps_dir and label_names are not set")
                    options = {
                        "folder": cfg.label_maps_dir,
                        "label_names": list(cfg.label_names),
                        "unlabelled": cfg.label_unlabelled,
                    }
                else:
                    options = {}
                src = make_source(name, **options)
            except GsbpError as exc:
                inactive[name] = str(exc)
                self._warn(f"feature source {name!r} inactive: {exc}")
                continue
            self.sources[name] = src
        self._set(active_sources=list(self.sources), inactive_sources=inactive)
        self._log(f"active feature sources: {list(self.sources) or 'none'}")

    # -- helpers ------------------------------------------------------------------------------
    def _need(self, name: str, purpose: str) -> None:
        if name in self.sources and self.field is not None and name in self.field.features:
            return
        reason = self.status().inactive_sources.get(name, "not in feature_sources")
        raise QueryError(
            f"{purpose} needs the {name!r} feature source, which is inactive: {reason}"
        )

    def scene_colors(self) -> np.ndarray:
        """[N, 3] uint8 view-independent (DC) colours."""
        self._require_scene()
        rgb = (SH_C0 * self.scene.sh[:, 0, :] + 0.5).clamp(0.0, 1.0)
        return (rgb * 255.0 + 0.5).to(torch.uint8).cpu().numpy()

    def _require_scene(self) -> None:
        if self.scene is None:
            self.check_ready()
            raise NotReadyError("not ready: no scene loaded")

    def _region_context(self) -> dict:
        """Everything a region summary needs besides the indices (query.selection_from_indices)."""
        from gsbp_ros.regions import gaussian_normals, region_weights

        log_scales = self.scene.log_scales.cpu().numpy()
        quats = self.scene.quats.cpu().numpy()
        vp, seen_weight = self._view_points()
        opacity = torch.sigmoid(self.scene.logit_opacities).cpu().numpy()
        return {
            "normals_fn": lambda idx: gaussian_normals(log_scales[idx], quats[idx]),
            "camera_centers": np.stack([c.center.numpy() for c in self.cameras])
            if self.cameras
            else None,
            "view_points": vp,
            "weights": region_weights(opacity, seen_weight),
        }

    def _view_points(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """([N, 3] where each Gaussian's cameras stood, its own mean where none saw it;
        [N] its largest back-projection weight over the sources), None where unknown."""
        vp, seen_weight = None, None
        if self.field is not None and self.field.weights:
            seen_weight = np.max([w.cpu().numpy() for w in self.field.weights.values()], axis=0)
        if self.field is not None and self.field.viewpoints is not None:
            vp = self.field.viewpoints.cpu().numpy().astype(np.float64)
            if seen_weight is not None:  # the field stores zeros for "never seen"
                unseen = seen_weight <= 0
                vp[unseen] = self.scene.means.cpu().numpy()[unseen]
        return vp, seen_weight

    def plan_grasps(
        self,
        selection: Selection,
        *,
        gripper: ParallelJawGripper | None = None,
        options: GraspOptions | None = None,
    ) -> GraspSet:
        """Ranked parallel-jaw grasps on a selection (:func:`gsbp_ros.grasps.plan_grasps`),
        in scene units and the scene's frame; the scene's solids are built on first use."""
        from gsbp_ros.grasps import CollisionModel, GraspOptions, plan_grasps

        self.check_ready()
        options = (options or GraspOptions()).validated()
        with self._lock:
            key = (options.collision_opacity, options.support_sigmas)
            if self._collision is None or self._collision[0] != key:
                sc = self.scene
                model = CollisionModel.from_gaussians(
                    sc.means.cpu().numpy(),
                    sc.quats.cpu().numpy(),
                    sc.log_scales.cpu().numpy(),
                    torch.sigmoid(sc.logit_opacities).cpu().numpy(),
                    opacity_threshold=key[0],
                    support_sigmas=key[1],
                )
                self._collision = (key, model)
            return plan_grasps(
                self._collision[1],
                selection.indices,
                selection.scores,
                gripper=gripper,
                options=options,
                view_points=self._view_points()[0],
                name=selection.name,
            )

    # -- queries ------------------------------------------------------------------------------
    def _text_queries(
        self, positive: list[str], negative: list[str]
    ) -> tuple[str, torch.Tensor, torch.Tensor, list[str]]:
        """(source, [P, C] positive queries, [Q, C] negative queries, negatives used).

        Prompts that all name labels of the label-map source use its one-hot codes (with no
        negatives, every other label is a negative); anything else needs CLIP's text encoder.
        """
        from gsbp_ros.query import CANONICAL_NEGATIVES, label_query_codes

        labels = self.sources.get("labels")
        names = list(getattr(labels, "label_names", []))
        if labels is not None and _all_labels(positive, names):
            unknown = [n for n in negative if not _is_label(n, names)]
            if unknown:
                raise QueryError(
                    f"negative prompt(s) {unknown} name no label of the label-map source "
                    f"(labels: {', '.join(names)})"
                )
            if not negative:
                negative = [n for n in names if not _is_label(n, positive)]
            dim = self.field.features["labels"].shape[1]
            table = getattr(labels, "codes", None)
            pos_q = label_query_codes(names, positive, code_table=table)
            neg_q = (
                label_query_codes(names, negative, code_table=table)
                if negative
                else torch.zeros(0, dim)
            )
            # Unlabelled pixels voted for the background: a label wins only where it
            # outweighs them too (see gsbp_ros.features.labels).
            background = getattr(labels, "background_code", None)
            if background is not None:
                neg_q = torch.cat([neg_q, background[None].to(neg_q)])
                negative = [*negative, "(unlabelled)"]
            return "labels", pos_q, neg_q, negative
        if "clip" not in self.sources and labels is not None:
            unknown = [p for p in positive if not _is_label(p, names)]
            raise QueryError(
                f"prompt(s) {unknown} name no label ({', '.join(names)}) and text "
                f"segmentation by language needs the 'clip' source, which is inactive: "
                f"{self.status().inactive_sources.get('clip', 'not in feature_sources')}"
            )
        self._need("clip", "text segmentation")
        clip = self.sources["clip"]
        if not negative and self.config.canonical_negatives:
            negative = list(CANONICAL_NEGATIVES)
        dim = self.field.features["clip"].shape[1]
        pos_q = clip.encode_text(positive)
        neg_q = clip.encode_text(negative) if negative else torch.zeros(0, dim)
        return "clip", pos_q, neg_q, negative

    def segment_text(self, positive: list[str], negative: list[str], threshold: float) -> Selection:
        """Gaussians whose best positive prompt beats every negative (paper Sec. 4.2)."""
        from gsbp_ros.limits import check_prompts
        from gsbp_ros.query import similarity_segment, validate_prompts

        self.check_ready()
        check_prompts(positive, negative, self.limits)
        positive, negative = validate_prompts(positive, negative)
        _check_threshold(threshold)
        with self._lock:
            t0 = time.monotonic()
            source, pos_q, neg_q, negative = self._text_queries(positive, negative)
            feats = self._features[source]
            seen = self._weights[source] > 0
            mask, scores = similarity_segment(
                feats, pos_q.to(feats), neg_q.to(feats), threshold=threshold, seen=seen
            )
            sel = self._selection(" ".join(positive), mask, scores)
            sel.info.update(
                {
                    "source": source,
                    "negatives": ";".join(negative),
                    "latency_s": time.monotonic() - t0,
                }
            )
            self.last_selection = sel
            return sel

    def text_mask_2d(
        self, positive: list[str], negative: list[str], threshold: float, camera: Camera
    ) -> tuple[np.ndarray, np.ndarray]:
        """2D segmentation of one view (paper Eq. 7): render the field, same rule per pixel.

        Returns:
            mask: [H, W] bool. rgb: [H, W, 3] float render of the view (for overlays).
        """
        from gsbp_ros.overlay import mask_2d
        from gsbp_ros.query import validate_prompts
        from gsbp_ros.raster import compute_view_weights, render_rgb

        self.check_ready()
        positive, negative = validate_prompts(positive, negative)
        _check_threshold(threshold)
        with self._lock:
            source, pos_q, neg_q, _ = self._text_queries(positive, negative)
            scene = self._scene_dev
            cam = camera.to_device(self.device)
            w = compute_view_weights(
                scene, cam, engine=self.config.engine, options=self.config.raster
            )
            feats = self._features[source]
            rendered = w.render(feats)
            mask = mask_2d(rendered, pos_q.to(feats), neg_q.to(feats), threshold, w.alpha())
            rgb = render_rgb(scene, cam, weights=w, background=(1.0, 1.0, 1.0))
            return mask.cpu().numpy(), rgb.cpu().numpy()

    def segment_points(
        self, positive: np.ndarray, negative: np.ndarray, threshold: float = 0.0
    ) -> Selection:
        """Gaussians that resemble the ones at the positive points more than the negative ones.

        With no negative points, the seen scene's mean feature is the negative.

        Args:
            positive: [P, 3] world points (P >= 1). negative: [Q, 3].
        """
        from gsbp_ros.limits import check_near_scene, check_points
        from gsbp_ros.query import point_prompt_queries, similarity_segment

        self.check_ready()
        check_points(len(positive) + len(negative), self.limits)
        positive = _points(positive, "positive")
        negative = _points(negative, "negative")
        if positive.shape[0] == 0:
            raise QueryError("segment_points needs at least one positive point")
        _check_threshold(threshold)
        everything = np.concatenate([positive, negative])
        check_near_scene(everything, self._nearest_distances(everything), self.limits.point_margin)
        with self._lock:
            t0 = time.monotonic()
            source = next((s for s in ("dinov2", "clip", "labels") if s in self.sources), None)
            if source is None or self.field is None:
                raise QueryError("point segmentation needs an active feature source; none is")
            feats = self._features[source]
            means = self._scene_dev.means
            weights = self._weights[source]
            pos_q = point_prompt_queries(
                means, feats, torch.from_numpy(positive).to(means), weights=weights
            )
            if negative.shape[0]:
                neg_q = point_prompt_queries(
                    means, feats, torch.from_numpy(negative).to(means), weights=weights
                )
                negatives = f"points({negative.shape[0]})"
            else:
                # The paper's rule needs a negative: without one every Gaussian would beat
                # "nothing". The mean feature of the seen scene stands in for "everything
                # else", so a lone click selects what resembles it more than the average.
                neg_q = feats[weights > 0].mean(0, keepdim=True)
                negatives = "scene mean"
            mask, scores = similarity_segment(
                feats, pos_q, neg_q, threshold=threshold, seen=weights > 0
            )
            sel = self._selection(f"points({positive.shape[0]})", mask, scores)
            sel.info.update(
                {"source": source, "negatives": negatives, "latency_s": time.monotonic() - t0}
            )
            self.last_selection = sel
            return sel

    def pixels_to_points(self, camera: Camera, pixels: np.ndarray) -> np.ndarray:
        """World points on the surfaces under pixels of a view (for pixel prompts).

        Args:
            camera: the view. pixels: [P, 2] integer (column, row).
        Returns:
            [P, 3] world points at the rendered expected depth Σ w z / Σ w.
        """
        from gsbp_ros.query import pixel_prompt_points
        from gsbp_ros.raster import compute_view_weights

        self._require_scene()
        with self._lock:
            scene = self._scene_dev
            cam = camera.to_device(self.device)
            w = compute_view_weights(
                scene, cam, engine=self.config.engine, options=self.config.raster
            )
            R, t = cam.world_to_cam[:3, :3], cam.world_to_cam[:3, 3]
            z = (scene.means @ R.T + t)[:, 2:3]
            alpha = w.alpha()
            depth = w.render(z)[..., 0] / alpha.clamp_min(1e-8)
            pts = pixel_prompt_points(camera, pixels, depth.cpu(), alpha=alpha.cpu())
            return pts.cpu().numpy().astype(np.float64)

    def _nearest_distances(self, points: np.ndarray) -> np.ndarray:
        with self._lock:
            return _nearest_distances_of(self, points)

    def transfer_affordance(
        self,
        images: list[np.ndarray],
        masks: list[np.ndarray],
        labels: list[str],
        k: int,
        cameras: list[Camera] | None = None,
    ) -> Labelling:
        """Per-Gaussian affordance labels from annotated source images.

        Without ``cameras``: DINOv2 features of the sources, kNN against the field (paper
        Sec. 3.3). With ``cameras`` (the sources are views of this scene): the masks are lifted
        directly with the compositing weights; no feature model is needed.

        Args:
            images: HxWx3 uint8 RGB. masks: HxW int, v > 0 means labels[v-1].
            labels: L names. k: neighbours for the kNN vote.
        """
        from gsbp_ros.limits import check_k, check_labels, check_pixels
        from gsbp_ros.query import knn_transfer, labels_to_selections

        self.check_ready()
        check_labels(labels, self.limits)
        check_pixels([a.shape for a in [*images, *masks]], self.limits)
        if images and len(images) != len(masks):
            raise QueryError(f"got {len(images)} source images but {len(masks)} masks")
        _check_sources(images, masks, labels, cameras)
        if k <= 0:
            raise QueryError(f"k must be at least 1, got {k}")
        if cameras is None:
            check_k(k, self.limits)
        with self._lock:
            t0 = time.monotonic()
            if cameras is not None:
                lab, conf = self._lift_masks(masks, len(labels), cameras)
                mode = "lift"
            else:
                self._need("dinov2", "affordance transfer by kNN")
                src_feats, src_labels = self._source_patches(images, masks)
                target = self._features["dinov2"]
                lab, conf = knn_transfer(
                    target, src_feats.to(target), src_labels.to(target.device), k=k
                )
                unseen = ~(self._weights["dinov2"] > 0).to(lab.device)
                lab[unseen] = -1
                conf[unseen] = 0.0
                mode = "knn"
            lab_np = lab.cpu().numpy().astype(np.int64)
            conf_np = conf.cpu().numpy().astype(np.float32)
            regions = labels_to_selections(
                lab_np,
                conf_np,
                list(labels),
                self.scene.means.cpu().numpy(),
                **self._region_context(),
            )
            for r in regions:
                r.info.update({"mode": mode, "latency_s": time.monotonic() - t0})
            return Labelling(list(labels), lab_np, conf_np, regions)

    def _lift_masks(
        self, masks: list[np.ndarray], num_labels: int, cameras: list[Camera]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        from gsbp_ros.query import lift_label_votes
        from gsbp_ros.raster import compute_view_weights

        n = self.scene.num_gaussians
        votes = torch.zeros(n, num_labels, dtype=torch.float64, device=self.device)
        total = torch.zeros(n, dtype=torch.float64, device=self.device)
        scene = self._scene_dev
        for mask, cam in zip(masks, cameras):
            w = compute_view_weights(
                scene,
                cam.to_device(self.device),
                engine=self.config.engine,
                options=self.config.raster,
            )
            m = torch.from_numpy(mask.astype(np.int64)).to(self.device)
            onehot = torch.nn.functional.one_hot(m, num_labels + 1)[..., 1:].to(torch.float32)
            votes += w.backproject(onehot).to(torch.float64)
            total += w.weight_sum().to(torch.float64)
        return lift_label_votes(votes, total)

    def _source_patches(
        self, images: list[np.ndarray], masks: list[np.ndarray]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[M, C] DINOv2 patch features of the sources and their [M] labels (-1 background)."""
        from gsbp_ros.features.base import image_to_tensor
        from gsbp_ros.features.labels import resize_nearest

        extractor = self.sources["dinov2"].extractor
        feats, labs = [], []
        for img, mask in zip(images, masks):
            f = extractor.extract(image_to_tensor(img)[None])[0]  # [h, w, C], as scene renders
            h, w = f.shape[:2]
            # Each patch takes the label under its centre pixel (never a blend of labels).
            m = torch.from_numpy(resize_nearest(mask.astype(np.int64), h, w)).to(f.device)
            feats.append(f.reshape(-1, f.shape[-1]))
            labs.append((m - 1).reshape(-1))
        return torch.cat(feats), torch.cat(labs)

    def _selection(self, name: str, mask: torch.Tensor, scores: torch.Tensor) -> Selection:
        from gsbp_ros.query import selection_from_indices

        idx = mask.nonzero().flatten().cpu().numpy().astype(np.int64)
        ctx = self._region_context()
        return selection_from_indices(
            name,
            idx,
            scores.cpu().numpy()[idx],
            self.scene.means.cpu().numpy(),
            normals=ctx["normals_fn"](idx),
            camera_centers=ctx["camera_centers"],
            view_points=ctx["view_points"],
            weights=ctx["weights"],
        )

    def save_region(
        self,
        path: str,
        *,
        selection: Selection | None = None,
        complement: bool = False,
        cleanup: bool = False,
        overwrite: bool = True,
    ) -> tuple[str, int]:
        """Write the (last) selection, or its complement, as an Inria .ply below output_dir.

        ``cleanup`` drops statistical outliers from the selection first (open3d); off by
        default because the back-projected selection is clean without it (``gsbp eval``).
        ``overwrite`` False refuses to replace an existing file (QueryError).
        """
        from gsbp_ros.export import check_output_path, export_selection

        self.check_ready()
        sel = selection if selection is not None else self.last_selection
        if sel is None:
            raise QueryError("no selection to save: run a segmentation first or pass indices")
        if sel.indices.size and (
            sel.indices.min() < 0 or sel.indices.max() >= self.scene.num_gaussians
        ):
            raise QueryError(
                f"indices must lie in [0, {self.scene.num_gaussians}), got "
                f"[{sel.indices.min()}, {sel.indices.max()}]"
            )
        target = check_output_path(path, self.config.output_dir)
        with self._lock:
            written, count = export_selection(
                self.scene,
                torch.from_numpy(sel.indices),
                target,
                complement=complement,
                cleanup=cleanup,
                overwrite=overwrite,
            )
        return str(written), int(count)


def _nearest_distances_of(engine: GsbpEngine, points: np.ndarray) -> np.ndarray:
    """[P] distance from each point to the nearest Gaussian centre (a k-d tree of the means,
    built once)."""
    if engine._kdtree is None:
        from scipy.spatial import cKDTree

        engine._kdtree = cKDTree(engine.scene.means.detach().cpu().numpy().astype(np.float64))
    dist, _ = engine._kdtree.query(points, k=1)
    return np.asarray(dist, dtype=np.float64).reshape(-1)


def _remove_stale_outputs(output_dir: str, log: Callable[[str], None]) -> None:
    """Temporary files that a killed SaveRegion left below output_dir (the feature cache
    cleans its own folder)."""
    from gsbp_ros.fileio import remove_stale_temp_files

    removed = remove_stale_temp_files(output_dir, recursive=True) if output_dir else []
    if removed:
        log(f"removed {len(removed)} temporary file(s) of interrupted writes in {output_dir}")


def _world_transform(cfg: EngineConfig) -> np.ndarray | None:
    if not cfg.cameras_transform:
        return None
    t = np.asarray(cfg.cameras_transform, dtype=np.float64)
    if t.size != 16 or not np.isfinite(t).all():
        raise GsbpError(
            f"cameras_transform must be 16 finite numbers (a row-major 4x4), got {t.size}"
        )
    return t.reshape(4, 4)


def _is_label(name: str, names: Sequence[str]) -> bool:
    from gsbp_ros.query import label_key

    return label_key(name) in {label_key(n) for n in names}


def _all_labels(prompts: Sequence[str], names: Sequence[str]) -> bool:
    return bool(names) and all(_is_label(p, names) for p in prompts)


def _check_threshold(threshold: float) -> None:
    if not np.isfinite(threshold) or not 0.0 <= threshold <= 1.0:
        raise QueryError(f"threshold must lie in [0, 1] (0 = none), got {threshold}")


def _points(points: np.ndarray, what: str) -> np.ndarray:
    """[P, 3] float64 points (P may be 0); QueryError for any other shape or non-finite values."""
    arr = np.asarray(points, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 3))
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise QueryError(f"{what} points must have shape [P, 3], got {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise QueryError(f"{what} points contain NaN or Inf")
    return arr


def _check_sources(
    images: list[np.ndarray],
    masks: list[np.ndarray],
    labels: list[str],
    cameras: list[Camera] | None,
) -> None:
    if not masks:
        raise QueryError("no source masks given")
    if not labels or any(not str(n).strip() for n in labels):
        raise QueryError("labels must be a non-empty list of non-empty names")
    if cameras is None and len(images) != len(masks):
        raise QueryError(f"got {len(images)} source images but {len(masks)} masks")
    if cameras is not None and len(cameras) != len(masks):
        raise QueryError(f"got {len(cameras)} camera poses but {len(masks)} masks")
    for i, mask in enumerate(masks):
        if mask.ndim != 2:
            raise QueryError(f"mask {i} must be a 2D label image, got shape {list(mask.shape)}")
        if i < len(images) and images[i].shape[:2] != mask.shape:
            raise QueryError(
                f"mask {i} is {mask.shape[1]}x{mask.shape[0]} but its image is "
                f"{images[i].shape[1]}x{images[i].shape[0]}"
            )
        if cameras is not None and (cameras[i].height, cameras[i].width) != mask.shape:
            raise QueryError(
                f"mask {i} is {mask.shape[1]}x{mask.shape[0]} but its camera is "
                f"{cameras[i].width}x{cameras[i].height}"
            )
        top = int(mask.max()) if mask.size else 0
        if top > len(labels) or (mask.size and int(mask.min()) < 0):
            raise QueryError(
                f"mask {i} has label value {top} but only {len(labels)} labels were given "
                f"(0 = background, v > 0 = labels[v-1])"
            )
        if top == 0:
            log.warning("mask %d labels no pixel", i)


__all__ = ["EngineConfig", "EngineStatus", "GsbpEngine", "NotReadyError"]
