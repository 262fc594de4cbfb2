"""``topreward score`` end to end on the tiny model: a frame directory and a PyAV video."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.command_line import command_line

from topreward_ros.commands import score as cli_score
from topreward_ros.scoring import ScorerConfig, VideoScorer, load_scorer, prepare_view

INSTRUCTION = "wipe the table"


def run_score(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="topreward")
    cli_score.register(parser.add_subparsers())
    args = parser.parse_args(["score", *argv])
    return int(args.func(args))


def scored(out: Path, template: str, *values: object, run: Callable[[list[str]], int] = run_score) -> dict:
    """``topreward score`` with ``template`` (as for ``command_line``) and ``--output out``: exit 0, its score.json."""
    code = run([*command_line(template, *values), "--output", str(out)])
    assert code == 0
    return json.loads((out / "score.json").read_text())


@pytest.fixture(scope="module")
def scorer(tiny_model_dir: Path) -> VideoScorer:
    return load_scorer(ScorerConfig(model=str(tiny_model_dir), device="cpu"))


def scene(i: int, height: int = 96, width: int = 128) -> np.ndarray:
    """A moving bright square on a dark background: frame content changes over time."""
    rgb = np.full((height, width, 3), 30, np.uint8)
    x = 4 + 3 * i
    rgb[30:60, x % (width - 30) : x % (width - 30) + 30] = (220, 180, 40)
    return rgb


@pytest.fixture(scope="module")
def frame_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("frames")
    for i in range(45):  # 1.5 s at 30 fps
        Image.fromarray(scene(i)).save(path / f"frame_{i:04d}.png")
    (path / "notes.txt").write_text("not an image")
    return path


@pytest.fixture(scope="module")
def video_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import av

    path = tmp_path_factory.mktemp("video") / "episode.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=20)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        for i in range(50):  # 2.5 s at 20 fps
            for packet in stream.encode(av.VideoFrame.from_ndarray(scene(i), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_frame_dir_end_to_end(
    frame_dir: Path, tiny_model_dir: Path, scorer: VideoScorer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    result = scored(
        out,
        "{} --instruction {} --model {} --num-prefixes 3 --view-size 64 --device cpu --backend transformers",
        frame_dir,
        INSTRUCTION,
        tiny_model_dir,
    )
    # 2 fps from 30 fps: a frame may fill a slot up to 50 ms (the schedule's
    # slot slack) early, so frames 14 (0.467 s), 29 and 44 fill the 0.5 s slots.
    assert result["frame_source_indices"] == [0, 14, 29, 44]
    assert result["frame_stamps_ns"] == [round(i * 1e9 / 30) for i in (0, 14, 29, 44)]
    assert result["prefix_lengths"] == [1, 2, 4]
    assert result["prefix_stamps_ns"] == [result["frame_stamps_ns"][n - 1] for n in (1, 2, 4)]
    assert result["model_id"] == str(tiny_model_dir) and result["instruction"] == INSTRUCTION
    # The numbers are the scorer's independent forwards on the same views.
    views = [
        prepare_view(np.asarray(Image.open(frame_dir / f"frame_{i:04d}.png").convert("RGB")), 64)
        for i in (0, 14, 29, 44)
    ]
    stamps = result["frame_stamps_ns"]
    expected = [scorer.score(views[:n], stamps[:n], INSTRUCTION) for n in (1, 2, 4)]
    np.testing.assert_allclose(result["log_prob_true"], [s.log_prob_true for s in expected], atol=1e-3)
    np.testing.assert_allclose(result["log_prob_false"], [s.log_prob_false for s in expected], atol=1e-3)
    raw = np.array(result["log_prob_true"])
    np.testing.assert_allclose(result["normalized"], (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-9)
    assert result["success_score"] == pytest.approx(raw[-3:].mean())
    png = (out / "curve.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    printed = capsys.readouterr().out
    assert "45 image frames, 4 sampled at 2 fps" in printed and "success score" in printed


def test_video_end_to_end_through_the_topreward_command(
    video_file: Path, tiny_model_dir: Path, scorer: VideoScorer, tmp_path: Path
) -> None:
    import av

    from topreward_ros.commands.cli import main

    out = tmp_path / "out"
    template = "score {} --instruction {} --model {} --num-prefixes 4 --view-size 64 --no-cache"
    result = scored(out, template, video_file, INSTRUCTION, tiny_model_dir, run=main)
    assert result["input_kind"] == "video" and result["source_frames"] == 50
    # The video's own timestamps (20 fps): frames 9, 19, ... fill the 0.5 s slots
    # (within the 50 ms slot slack).
    assert result["frame_source_indices"] == [0, 9, 19, 29, 39, 49]
    assert result["frame_stamps_ns"] == [i * 50_000_000 for i in (0, 9, 19, 29, 39, 49)]
    assert result["prefix_lengths"] == [1, 3, 4, 6] and result["cached"] is False
    with av.open(str(video_file)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    views = [prepare_view(decoded[i], 64) for i in (0, 9, 19, 29, 39, 49)]
    expected = [scorer.score(views[:n], result["frame_stamps_ns"][:n], INSTRUCTION).log_prob_true for n in (1, 3, 4, 6)]
    np.testing.assert_allclose(result["log_prob_true"], expected, atol=1e-3)


def test_existing_results_are_kept(
    frame_dir: Path, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "score.json").write_text("keep me")
    code = run_score(
        command_line("{} --instruction {} --model {} --output {}", frame_dir, INSTRUCTION, tiny_model_dir, out)
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "already exist" in err and "--force" in err
    assert (out / "score.json").read_text() == "keep me"


@pytest.mark.parametrize(
    ("make_input", "extra", "message"),
    [
        (lambda tmp: tmp / "missing", [], "does not exist"),
        (lambda tmp: tmp, [], "holds no images"),
        (lambda tmp: (tmp / "bad.mp4").write_text("not a video") and tmp / "bad.mp4", [], "cannot open"),
        (lambda tmp: tmp, ["--num-prefixes", "1"], "num_prefixes must be an integer >= 2, got 1"),
        (lambda tmp: tmp, ["--source-fps", "0"], "--source-fps must be a finite number > 0"),
        (lambda tmp: tmp, ["--device", "tpu"], "device must be one of"),
    ],
)
def test_bad_inputs_fail_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make_input, extra: list[str], message: str
) -> None:
    path = make_input(tmp_path)
    code = run_score(
        [*command_line("{} --instruction {} --model {}", path, INSTRUCTION, tmp_path / "no-model"), *extra]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("topreward score: error: ") and message in err


def test_blank_instruction_fails_before_loading(frame_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_score([str(frame_dir), "--instruction", "  ", "--model", "/nonexistent"]) == 2
    assert "instruction must contain text" in capsys.readouterr().err


def test_missing_model_fails_with_the_load_error(
    frame_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-model"
    assert run_score([str(frame_dir), "--instruction", INSTRUCTION, "--model", str(missing)]) == 1
    assert f"local directory {missing} does not exist" in capsys.readouterr().err


def test_the_rig_file_sets_model_sampling_and_view_and_an_option_wins_with_a_note(
    frame_dir: Path, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rig = tmp_path / "rig.yaml"
    rig.write_text(
        f"/**:\n  ros__parameters:\n    model: {str(tiny_model_dir)!r}\n    device: cpu\n"
        "    sample_fps: 1.0\n    view_size: 48\n    camera_topics: [cam/image_raw]\n"
    )
    out = tmp_path / "out"
    result = scored(
        out, "{} --instruction {} --params-file {} --view-size 64 --num-prefixes 2", frame_dir, INSTRUCTION, rig
    )
    assert (result["model_id"], result["sample_fps"], result["view_size"]) == (str(tiny_model_dir), 1.0, 64)
    assert result["frame_source_indices"] == [0, 27]  # 1 fps of the file (2 fps would give 0, 14, 29, 44)
    assert f"topreward score: note: --view-size 64 overrides view_size: 48 of {rig}" in capsys.readouterr().err


def test_a_backend_the_registry_does_not_know_is_refused(
    frame_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rig = tmp_path / "rig.yaml"
    rig.write_text("/**:\n  ros__parameters:\n    backend: vllm\n")
    assert run_score([str(frame_dir), "--instruction", INSTRUCTION, "--params-file", str(rig)]) == 2
    assert "backend must be one of transformers, got 'vllm'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        run_score([str(frame_dir), "--instruction", INSTRUCTION, "--backend", "vllm"])
    assert exited.value.code == 2
    assert "--backend: invalid choice: 'vllm'" in capsys.readouterr().err
