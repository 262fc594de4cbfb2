"""A bad start-up configuration stops the node with a message naming the value.

In-process nodes (no model is loaded: the model path does not exist, and the
checks run before anything would use it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.context import Context  # noqa: E402
from rclpy.exceptions import ParameterException  # noqa: E402
from support.modelless_node import modelless_node  # noqa: E402

from topreward_ros.node.params import MODEL_PARAMS, PARAM_BY_NAME, PARAMETERS  # noqa: E402

make = modelless_node


@pytest.mark.parametrize(
    "params, message",
    [
        ({"camera_topics": [""]}, "camera_topics is empty"),
        ({"camera_topics": ["a/image_raw", "a/image_raw"]}, "camera_topics lists a topic twice"),
        ({"camera_stall_warn_s": 3.0, "camera_stall_error_s": 2.0}, r"camera_stall_error_s \(2.0\) must be >="),
        ({"device": "tpu"}, "device must be one of .* got 'tpu'"),
        ({"dtype": "int8"}, "dtype must be one of .* got 'int8'"),
        ({"backend": "vllm"}, "backend must be one of transformers, got 'vllm'"),
    ],
)
def test_bad_values_are_named(context: Context, tmp_path: Path, params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(context, tmp_path, **params)


def test_out_of_range_value_is_refused(context: Context, tmp_path: Path) -> None:
    with pytest.raises(ParameterException, match="success_threshold"):
        make(context, tmp_path, success_threshold=3.0)


def test_every_parameter_is_declared_with_description_and_mutability(context: Context, tmp_path: Path) -> None:
    node = make(context, tmp_path)
    try:
        for spec in PARAMETERS:
            descriptor = node.describe_parameter(spec.name)
            assert descriptor.description == spec.description
            assert descriptor.read_only == (not spec.runtime)
            if spec.min_value is not None and not isinstance(spec.default, bool):
                ranges = descriptor.integer_range or descriptor.floating_point_range
                assert ranges, f"{spec.name} declares no range"
                assert (ranges[0].from_value, ranges[0].to_value) == (spec.min_value, spec.max_value)
    finally:
        node.destroy_node()


def test_the_backend_is_set_like_the_model_and_reloads_it() -> None:
    spec = PARAM_BY_NAME["backend"]
    assert spec.default == "transformers" and spec.runtime == PARAM_BY_NAME["model"].runtime is True
    assert {"model", "backend"} <= MODEL_PARAMS
