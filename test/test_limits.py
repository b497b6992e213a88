"""Bounds of one request (gsbp_ros.limits) and the engine's refusals: each names its limit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from engine_support import demo_config, started_engine

from gsbp_ros.demo_scene import write_demo_scene
from gsbp_ros.engine import GsbpEngine
from gsbp_ros.errors import QueryError
from gsbp_ros.limits import (
    RequestLimits,
    check_k,
    check_labels,
    check_near_scene,
    check_pixels,
    check_points,
    check_prompts,
)

LIM = RequestLimits(
    max_points=3,
    max_prompts=2,
    max_prompt_chars=5,
    max_labels=2,
    max_request_pixels=100,
    max_k=4,
    point_margin=1.0,
)


def test_each_bound_is_named_and_zero_means_none():
    cases = [
        (lambda lim: check_points(4, lim), "4 points > max_points (3)"),
        (lambda lim: check_prompts(["a", "b"], ["c"], lim), "3 prompts > max_prompts (2)"),
        (lambda lim: check_prompts(["abcdef"], [], lim), "max_prompt_chars (5)"),
        (lambda lim: check_labels(["a", "b", "c"], lim), "3 labels > max_labels (2)"),
        (lambda lim: check_pixels([(10, 10), (1, 1)], lim), "101 image pixels"),
        (lambda lim: check_k(5, lim), "5 neighbours k > max_k (4)"),
    ]
    unbounded = dataclasses.replace(
        LIM,
        max_points=0,
        max_prompts=0,
        max_prompt_chars=0,
        max_labels=0,
        max_request_pixels=0,
        max_k=0,
    )
    for call, message in cases:
        with pytest.raises(QueryError, match=message.replace("(", r"\(").replace(")", r"\)")):
            call(LIM)
        call(unbounded)  # 0 = no bound
    check_points(3, LIM)  # at the bound: fine
    check_pixels([(10, 10)], LIM)


def test_duplicate_labels_are_refused():
    with pytest.raises(
        QueryError, match=r"duplicate label 'grasp' \(labels\[0\] and labels\[1\]\)"
    ):
        check_labels(["grasp", "grasp"], RequestLimits())
    check_labels(["grasp", "Grasp"], RequestLimits())  # names are case-sensitive


def test_far_points_are_refused_with_their_distance():
    pts = np.array([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0]])
    with pytest.raises(QueryError, match=r"point \(100, 0, 0\) is 99 from the nearest Gaussian"):
        check_near_scene(pts, np.array([0.1, 99.0]), 1.0)
    check_near_scene(pts, np.array([0.1, 0.9]), 1.0)
    check_near_scene(pts, np.array([0.1, 99.0]), 0.0)  # 0 = no check


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> GsbpEngine:
    out = tmp_path_factory.mktemp("demo")
    write_demo_scene(out, num_views=6, width=96, height=72, density=0.4)
    return started_engine(demo_config(out))


def test_engine_refuses_over_limit_and_far_points_then_keeps_serving(engine):
    engine.limits = RequestLimits(max_points=5, max_prompts=3, point_margin=0.5)
    mug = np.array([[-0.28, 0.10, 0.05]])
    with pytest.raises(QueryError, match="max_points"):
        engine.segment_points(np.repeat(mug, 6, axis=0), np.zeros((0, 3)), 0.0)
    with pytest.raises(QueryError, match="max_prompts"):
        engine.segment_text(["mug", "bowl"], ["table", "box"], 0.0)
    for far in (100.0, 1e30):  # a 1 m scene: these select nothing
        with pytest.raises(QueryError, match="from the nearest Gaussian > point_margin"):
            engine.segment_points(mug + np.array([far, 0.0, 0.0]), np.zeros((0, 3)), 0.0)
    with pytest.raises(QueryError, match="from the nearest Gaussian"):  # a far negative too
        engine.segment_points(mug, mug + np.array([0.0, 0.0, 50.0]), 0.0)
    assert engine.segment_points(mug, np.zeros((0, 3)), 0.0).indices.size > 0


def test_engine_refuses_duplicate_labels_and_image_mask_mismatch(engine):
    engine.limits = RequestLimits()
    img = np.zeros((8, 8, 3), np.uint8)
    mask = np.ones((8, 8), np.int64)
    with pytest.raises(QueryError, match="duplicate label 'grasp'"):
        engine.transfer_affordance([img], [mask], ["grasp", "grasp"], 1)
    with pytest.raises(QueryError, match="3 source images but 2 masks"):
        engine.transfer_affordance([img] * 3, [mask] * 2, ["grasp"], 1)
    with pytest.raises(QueryError, match="max_request_pixels"):
        engine.limits = RequestLimits(max_request_pixels=100)
        engine.transfer_affordance([img], [mask], ["grasp"], 1)
    engine.limits = RequestLimits(max_k=2)
    with pytest.raises(QueryError, match="max_k"):
        engine.transfer_affordance([img], [mask], ["grasp"], 3)
