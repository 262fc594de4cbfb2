"""A scorer node whose model cannot be loaded keeps serving and recovers.

Its own process (and module): the node of test_scorer_node must be gone, or
two rigs would publish two /clock streams on one graph.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from support.scorer_node_rig import CAM0, NodeProcess, Rig  # noqa: E402

pytestmark = [pytest.mark.timeout(240)]


def test_model_load_failure_keeps_serving_and_recovers(tiny_model_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    proc = NodeProcess(
        {
            "use_sim_time": "true",
            "camera_topics": f"['{CAM0}']",
            "model": str(missing),
            "rate_hz": "4.0",
            "view_size": "64",
            "diagnostics_period_s": "0.25",
            "torch_threads": "1",
        },
        tmp_path / "node.log",
    )
    try:
        rig = Rig(proc, compressed_camera=False)
    except BaseException:
        proc.stop(signal.SIGKILL)
        raise
    try:
        rig.wait_matched()
        rig.start_streaming()
        rig.instruct("wipe the table")
        status = rig.wait_for(
            "the load failure at ERROR",
            lambda: (s := rig.latest_status(": model")) is not None and s.level == DiagnosticStatus.ERROR and s,
            timeout=90,
        )
        assert str(missing) in status.message and "does not exist" in status.message
        # Still serving: diagnostics for the camera, no scores, process alive.
        rig.wait_for(
            "camera diagnostics while the model is missing",
            lambda: (s := rig.latest_status(f"camera {CAM0}")) is not None and s.level == DiagnosticStatus.OK,
        )
        with rig.lock:
            assert rig.progress == []
        assert proc.alive()
        # A parameter change retries, and scoring starts.
        assert rig.set_params(model=str(tiny_model_dir))[0].successful
        rig.wait_for(
            "the model to load after the parameter change",
            lambda: (s := rig.latest_status(": model")) is not None and s.level == DiagnosticStatus.OK,
            timeout=90,
        )
        msgs = rig.wait_for("progress after recovery", lambda: rig.progress[:2] if len(rig.progress) >= 2 else None)
        assert msgs[0].instruction == "wipe the table"
    finally:
        rig.close()
        rc = proc.stop(signal.SIGTERM)  # also when a check above failed: never leave it running
    assert rc == 0, proc.log()[-3000:]
    assert "Traceback" not in proc.log()
    # Each load first logs the rig check: skipped for the missing model, then the tiny model's verdict.
    assert f"rig check skipped: ModelLoadError: cannot read the configuration of model '{missing}'" in proc.log()
    assert "rig check: FITS: needs " in proc.log()
    assert "Samples of 64x64, 2 video tokens each; at max_frames 256:" in proc.log()
