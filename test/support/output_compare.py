"""Comparing two `topreward bag` output directories value by value.

Two engines (local, Ray) or two runs (interrupted + resumed, in one go) must
leave the same outputs. Files are compared by content: JSON structures
exactly, except floats within a tolerance (torch may sum in another order
with another thread count) and the measured latency, which is a timing;
Parquet tables column by column, floats within the same tolerance; CSV
files row by row (numbers within it); progress.mcap message by message
(topic, log time and every decoded field); PNG plots and mp4 videos by their
decoded pixels. Any other file kind fails the comparison, so a new output is
never waved through unread.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

TOLERANCE = 1e-4
TIMINGS = {"latency_s"}


def assert_close(a: Any, b: Any, where: str = "") -> None:
    """Equal structures; floats within TOLERANCE; timing keys ignored."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys_a, keys_b = set(a) - TIMINGS, set(b) - TIMINGS
        assert keys_a == keys_b, f"{where}: keys differ: {sorted(keys_a ^ keys_b)}"
        for key in keys_a:
            assert_close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), f"{where}: {a!r} {b!r}"
        assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= TOLERANCE, f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_tables_close(a: Path, b: Path) -> None:
    ta, tb = pq.read_table(a), pq.read_table(b)
    assert ta.schema == tb.schema, f"{a}: schema differs"
    assert ta.num_rows == tb.num_rows, f"{a}: {ta.num_rows} rows != {tb.num_rows}"
    for name in ta.column_names:
        x, y = ta.column(name).to_numpy(zero_copy_only=False), tb.column(name).to_numpy(zero_copy_only=False)
        if x.dtype.kind == "f":
            assert np.allclose(x, y, atol=TOLERANCE, equal_nan=True), f"{a}: column {name}"
        else:
            assert list(x) == list(y), f"{a}: column {name}"


def assert_same_outputs(a: Path, b: Path, skip: tuple[str, ...] = ()) -> list[str]:
    """Every file under ``a`` and ``b`` matches; returns the compared relative paths."""
    files_a = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    files_b = sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        if Path(rel).name in skip:
            continue
        if rel.endswith(".json"):
            assert_close(json.loads((a / rel).read_text()), json.loads((b / rel).read_text()), rel)
        elif rel.endswith(".yaml"):
            import yaml

            assert_close(yaml.safe_load((a / rel).read_text()), yaml.safe_load((b / rel).read_text()), rel)
        elif rel.endswith(".parquet"):
            assert_tables_close(a / rel, b / rel)
        elif rel.endswith(".csv"):
            assert_csv_close(a / rel, b / rel)
        elif rel.endswith(".mcap"):
            assert_close(mcap_messages(a / rel), mcap_messages(b / rel), rel)
        elif rel.endswith(".png"):
            assert_images_close(png_pixels(a / rel), png_pixels(b / rel), rel)
        elif rel.endswith(".mp4"):
            frames_a, frames_b = video_frames(a / rel), video_frames(b / rel)
            assert len(frames_a) == len(frames_b), f"{rel}: {len(frames_a)} frames != {len(frames_b)}"
            for i, (x, y) in enumerate(zip(frames_a, frames_b)):
                assert_images_close(x, y, f"{rel} frame {i}")
        else:
            raise AssertionError(f"{rel}: no comparison for this kind of output")
    return files_a


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def assert_csv_close(a: Path, b: Path) -> None:
    with open(a, newline="") as fa, open(b, newline="") as fb:
        rows_a, rows_b = list(csv.reader(fa)), list(csv.reader(fb))
    assert len(rows_a) == len(rows_b), f"{a}: {len(rows_a)} rows != {len(rows_b)}"
    for r, (x, y) in enumerate(zip(rows_a, rows_b)):
        assert len(x) == len(y), f"{a} row {r}: {len(x)} cells != {len(y)}"
        for c, (u, v) in enumerate(zip(x, y)):
            nu, nv = _number(u), _number(v)
            if nu is not None and nv is not None and (u != v):
                assert (math.isnan(nu) and math.isnan(nv)) or abs(nu - nv) <= TOLERANCE, (
                    f"{a} row {r} column {c}: {u} != {v}"
                )
            else:
                assert u == v, f"{a} row {r} column {c}: {u!r} != {v!r}"


def _plain(value: Any) -> Any:
    """A decoded ROS message as nested dicts and lists (floats kept as floats)."""
    if hasattr(value, "__slots__") or hasattr(value, "__dataclass_fields__"):
        names = getattr(value, "__dataclass_fields__", None) or value.__slots__
        return {n: _plain(getattr(value, n)) for n in names if not n.startswith("_")}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def mcap_messages(path: Path) -> list[dict[str, Any]]:
    """Every message of an MCAP file: topic, log time and its decoded fields."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    out = []
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        for _, channel, message, decoded in reader.iter_decoded_messages():
            fields = _plain(decoded)
            if isinstance(fields, dict):
                fields.pop("inference_latency", None)  # a timing
            out.append({"topic": channel.topic, "log_time": message.log_time, "fields": fields})
    return out


def png_pixels(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def video_frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def assert_images_close(a: np.ndarray, b: np.ndarray, where: str) -> None:
    """Same size, and pixels within a few levels (a score 1e-4 apart moves a line by a pixel at most)."""
    assert a.shape == b.shape, f"{where}: {a.shape} != {b.shape}"
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    assert float(diff.mean()) < 1.0, f"{where}: mean pixel difference {diff.mean():.3f}"
