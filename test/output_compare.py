"""Comparing two `topreward bag` output directories value by value.

Two engines (local, Ray) or two runs (interrupted + resumed, in one go) must
leave the same outputs. Files are compared by content: JSON structures
exactly, except floats within a tolerance (torch may sum in another order
with another thread count) and the measured latency, which is a timing;
Parquet tables column by column, floats within the same tolerance.
"""
from __future__ import annotations

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
        x, y = ta.column(name).to_numpy(zero_copy_only=False), tb.column(name).to_numpy(
            zero_copy_only=False)
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
        elif rel.endswith(".parquet"):
            assert_tables_close(a / rel, b / rel)
    return files_a
