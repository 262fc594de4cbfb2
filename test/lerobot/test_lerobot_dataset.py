"""LeRobot v3 datasets in, RA-BC progress parquet out, with the real tiny Qwen3-VL.

The dataset fixture is written the way LeRobot lays one out on disk (pyarrow
parquet tables, SVT-AV1 mp4 files from PyAV holding several episodes each;
``lerobot.synthetic``), since the ``lerobot`` package itself pins an older
torch and av than this package. The checks compare with what the fixture
wrote (tasks, indices, timestamps, the RGB frames handed to the encoder) and
with an independent reference: the file decoded front to back with PyAV in
this test, the frames picked by position, scored through the scoring core.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from support.command_line import command_line
from support.offline_run import score_bag, score_dataset, tiny_scorer

from topreward_ros.commands.cli import main
from topreward_ros.demo.scene import DEMO_SCENES, SceneSpec
from topreward_ros.demo.synthetic_bag import write_episodes_bag
from topreward_ros.demo.synthetic_lerobot import DatasetCamera, write_lerobot_dataset
from topreward_ros.episode.records import EpisodeSettings
from topreward_ros.lerobot.dataset import DatasetError, LeRobotDatasetDir, read_tasks
from topreward_ros.lerobot.join import JoinError, dataset_index
from topreward_ros.lerobot.progress import PROGRESS_FILE, PROGRESS_SCHEMA, read_model_id
from topreward_ros.lerobot.video import EpisodeVideo
from topreward_ros.offline.manifest import ManifestError
from topreward_ros.scoring import prepare_view
from topreward_ros.scoring.schedule import sample_indices

VIEW = 64
K = 6
SCENES = (*DEMO_SCENES, SceneSpec("push the green block to the left", (40, 160, 60), 0.6, 0.3))
SETTINGS = EpisodeSettings(view_size=VIEW, success_threshold=-8.0)
FRONT, WRIST = "observation.images.front", "observation.images.wrist"
CAMERAS = (DatasetCamera(FRONT, 128, 96), DatasetCamera(WRIST, 96, 64, mirrored=True))
# Mean absolute RGB error of SVT-AV1 at the fixture's quality; consecutive
# frames of the scene differ by more, so a frame off by one fails.
CODEC_TOLERANCE = 6.0


@pytest.fixture(scope="module")
def scorer(tiny_model_dir):
    return tiny_scorer(tiny_model_dir, VIEW, num_prefixes=K)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Three episodes, two cameras; episodes 0-1 share file-000, episode 2 is in file-001."""
    return write_lerobot_dataset(
        tmp_path_factory.mktemp("lerobot") / "ds", SCENES, CAMERAS, fps=10, duration_s=3.0, episodes_per_file=2
    )


def test_writing_the_fixture_leaves_this_process_scheduling_as_it_was(tmp_path):
    """The AV1 encoder turns its calling thread real-time when it can; the writer undoes it."""
    import os

    before = (os.sched_getscheduler(0), os.sched_getparam(0))
    write_lerobot_dataset(tmp_path / "ds", SCENES[:1], CAMERAS[:1], fps=10, duration_s=0.5)
    assert (os.sched_getscheduler(0), os.sched_getparam(0)) == before


@pytest.mark.parametrize("raises", [False, True])
def test_the_writer_restores_a_scheduling_change_made_inside_it(raises):
    """The restore itself, as any user can exercise it (the test above needs root to mean anything).

    A non-root thread may not take SCHED_FIFO, but it may switch between
    SCHED_OTHER and SCHED_BATCH; the change is made in a thread of its own,
    so a failed restore never leaks into the other tests.
    """
    import os
    import threading

    from topreward_ros.demo.synthetic_lerobot import _calling_thread_scheduling_kept

    seen: dict[str, object] = {}

    def body() -> None:
        before = (os.sched_getscheduler(0), os.sched_getparam(0))
        other = os.SCHED_BATCH if before[0] != os.SCHED_BATCH else os.SCHED_OTHER
        try:
            with _calling_thread_scheduling_kept():
                os.sched_setscheduler(0, other, os.sched_param(0))
                seen["inside"] = os.sched_getscheduler(0) == other
                if raises:
                    raise KeyError("the encoder failed")
        except KeyError:
            seen["raised"] = True
        seen["after"] = (os.sched_getscheduler(0), os.sched_getparam(0))
        seen["before"] = before

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen["inside"] is True  # the change really happened
    assert seen.get("raised", False) is raises
    assert seen["after"] == seen["before"]


def options(**kw) -> dict:
    base = dict(camera_keys=(FRONT, WRIST), tick_rate_hz=2.0, num_prefixes=K, plot=False)
    base.update(kw)
    return base


def mtimes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.glob("episode_*/*") if p.is_file()}


def decode_file(path: Path) -> list[np.ndarray]:
    """Every picture of an mp4 in order, decoded without seeking (the reference)."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


# -- reading --------------------------------------------------------------------------------


def test_reader_gives_episodes_tasks_stamps_and_the_encoded_frames(written):
    dataset = LeRobotDatasetDir(written.root)
    assert dataset.camera_keys == [FRONT, WRIST]
    assert dataset.fps == 10.0
    assert list(dataset.episodes) == [0, 1, 2]
    assert dataset.tasks == {i: s.instruction for i, s in enumerate(SCENES)}
    spans = [dataset.episodes[i].videos[WRIST] for i in range(3)]
    assert [(s.path.name, s.from_s, s.to_s) for s in spans] == [
        ("file-000.mp4", 0.0, 3.0),
        ("file-000.mp4", 3.0, 6.0),
        ("file-001.mp4", 0.0, 3.0),
    ]
    for episode in written.episodes:
        frames = dataset.frames(dataset.episodes[episode.episode_index])
        assert frames.index.tolist() == episode.index
        assert dataset.task_text(int(frames.task_index[0])) == episode.task
        assert frames.stamps_ns.tolist() == [round(t * 1e9) for t in episode.timestamps]
        for key in (FRONT, WRIST):
            encoded = np.stack(episode.frames[key]).astype(np.int16)
            with EpisodeVideo(dataset.episodes[episode.episode_index].videos[key], 0.05) as video:
                for i, offset in enumerate(frames.timestamp):
                    decoded, why = video.frame_at(float(offset))
                    assert decoded is not None, why
                    errors = np.abs(encoded - decoded.rgb().astype(np.int16)).mean(axis=(1, 2, 3))
                    assert errors[i] < CODEC_TOLERANCE, (key, episode.episode_index, i)
                    assert int(np.argmin(errors)) == i, (key, episode.episode_index, i)


def test_sparse_queries_seek_and_give_the_frames_decoding_through_gives(written):
    """Sparse queries (the 2 fps schedule's on a 30 fps camera, here 1 in 10 frames): seeking
    ahead gives the very pictures decoding straight through gives, decoding fewer frames."""
    dataset = LeRobotDatasetDir(written.root)
    for episode in written.episodes:
        frames = dataset.frames(dataset.episodes[episode.episode_index])
        queries = [float(t) for t in frames.timestamp[::10]]
        for key in (FRONT, WRIST):
            span = dataset.episodes[episode.episode_index].videos[key]
            with EpisodeVideo(span, 0.05, seek=False) as through, EpisodeVideo(span, 0.05) as seeking:
                for offset in queries:
                    a, b = through.frame_at(offset)[0], seeking.frame_at(offset)[0]
                    assert a is not None and b is not None
                    assert a.time_s == b.time_s
                    assert np.array_equal(a.rgb(), b.rgb()), (key, episode.episode_index, offset)
                assert seeking.decoded < through.decoded, (seeking.decoded, through.decoded)


def test_tasks_read_from_a_named_index_or_a_plain_column(tmp_path):
    path = tmp_path / "tasks.parquet"
    pq.write_table(pa.table({"task": ["open the drawer", "close it"], "task_index": [0, 1]}), path)
    assert read_tasks(path) == {0: "open the drawer", 1: "close it"}
    pq.write_table(pa.table({"task_index": [3]}), path)
    with pytest.raises(DatasetError, match="no column holds the task text"):
        read_tasks(path)


def test_a_gap_in_the_video_is_reported_not_papered_over(written):
    span = LeRobotDatasetDir(written.root).episodes[2].videos[FRONT]
    # Asking past the span's end: no decoded picture within half a frame.
    with EpisodeVideo(span, 0.05) as video:
        assert video.frame_at(2.9)[0] is not None
        frame, why = video.frame_at(3.5)
    assert frame is None and "nearest frame" in why


# -- scoring --------------------------------------------------------------------------------


def test_every_episode_scored_like_an_independent_scoring_of_the_decoded_frames(tmp_path, written, scorer):
    out = tmp_path / "out"
    report = score_dataset(scorer, SETTINGS, options(), written.root, out, progress=False)
    assert report.ok, report.summary()
    assert [e.status for e in report.episodes] == ["scored"] * 3
    files = {
        (key, i): decode_file(written.root / f"videos/{key}/chunk-000/file-00{i}.mp4")
        for key in (FRONT, WRIST)
        for i in (0, 1)
    }
    progress = pq.read_table(out / PROGRESS_FILE)
    for episode in written.episodes:
        ep_dir = out / f"episode_{episode.episode_index:04d}"
        record = json.loads((ep_dir / "curve.json").read_text())
        assert record["instruction"] == episode.task
        assert record["dataset_episode"] == episode.episode_index
        stamps = [round(t * 1e9) for t in episode.timestamps]
        picks = sample_indices(stamps, SETTINGS.sample_fps)
        assert record["sample_stamps_ns"] == [stamps[i] for i in picks]
        table = pq.read_table(ep_dir / "frames.parquet").to_pydict()
        assert table["stamp_ns"] == stamps
        assert table["episode_index"] == [episode.episode_index] * len(stamps)
        assert np.allclose(table["timestamp"], episode.timestamps, atol=1e-6)
        # Reference: the pictures at those positions of the files, scored by the core.
        first = round(episode.from_timestamp * written.fps)
        views = [
            np.concatenate(
                [prepare_view(files[(key, episode.file_index)][first + i], VIEW) for key in (FRONT, WRIST)], axis=1
            )
            for i in picks
        ]
        sample_stamps = [stamps[i] for i in picks]
        reference = scorer.curve(views, sample_stamps, episode.task, num_prefixes=K)
        assert record["offline"]["log_prob_true"] == pytest.approx(reference.log_prob_true, abs=1e-5)
        assert record["offline"]["normalized"] == pytest.approx(reference.normalized, abs=1e-5)
        # A live tick equals one forward over the samples it saw.
        tick = record["live"][-1]
        n = tick["frames_used"]
        live = scorer.score(views[:n], sample_stamps[:n], episode.task)
        assert tick["log_prob_true"] == pytest.approx(live.log_prob_true, abs=1e-4)
        # The RA-BC rows of this episode: the dataset's own index, the table's progress.
        mine = pc.equal(progress.column("episode_index"), episode.episode_index)
        rows = progress.filter(mine).to_pydict()
        assert rows["index"] == episode.index
        assert rows["frame_index"] == list(range(len(stamps)))
        assert rows["progress_sparse"] == pytest.approx(table["progress"], abs=0)
        # progress_sparse from first principles: the reference's raw log p per
        # prefix, min-max normalised here, then interpolated over the frames'
        # stamps between the prefixes' last sampled frames.
        raw = np.asarray(reference.log_prob_true)
        assert raw.max() > raw.min()
        normalised = (raw - raw.min()) / (raw.max() - raw.min())
        ends = np.asarray([sample_stamps[k - 1] for k in reference.prefix_lengths], dtype=np.float64)
        expected = np.interp(np.asarray(stamps, dtype=np.float64), ends, normalised)
        assert rows["progress_sparse"] == pytest.approx(expected, abs=1e-5)
    assert progress.schema.remove_metadata() == PROGRESS_SCHEMA
    assert read_model_id(out / PROGRESS_FILE) == scorer.model_id
    assert progress.schema.metadata[b"topreward_ros.index"] == b"dataset"
    assert progress.column("index").to_pylist() == list(range(90))


def test_selected_episodes_resume_and_other_settings_are_refused(tmp_path, written, scorer):
    out = tmp_path / "out"
    only_last = score_dataset(scorer, SETTINGS, options(episodes=(2,)), written.root, out, progress=False)
    assert [(e.index, e.status) for e in only_last.episodes] == [(2, "scored")]
    assert pq.read_table(out / PROGRESS_FILE).column("index").to_pylist() == list(range(60, 90))
    first = score_dataset(scorer, SETTINGS, options(max_episodes=1), written.root, out, progress=False)
    assert first.stopped_early
    assert [(e.index, e.status) for e in first.episodes] == [(0, "scored")]
    before = mtimes(out)
    rest = score_dataset(scorer, SETTINGS, options(), written.root, out, progress=False)
    assert [e.status for e in rest.episodes] == ["skipped", "scored", "skipped"]
    after = mtimes(out)
    assert {k: after[k] for k in before} == before
    progress = pq.read_table(out / PROGRESS_FILE).to_pydict()
    assert progress["index"] == list(range(90))
    assert progress["episode_index"] == [0] * 30 + [1] * 30 + [2] * 30
    with pytest.raises(ManifestError, match="num_prefixes: 6 -> 5"):
        score_dataset(scorer, SETTINGS, options(num_prefixes=5), written.root, out, progress=False)


def test_a_broken_video_fails_only_its_episode(tmp_path, written, scorer):
    root = tmp_path / "ds"
    shutil.copytree(written.root, root)
    (root / f"videos/{FRONT}/chunk-000/file-001.mp4").write_bytes(b"not a video")
    report = score_dataset(scorer, SETTINGS, options(camera_keys=(FRONT,)), root, tmp_path / "out", progress=False)
    assert [e.status for e in report.episodes] == ["scored", "scored", "failed"]
    assert "file-001.mp4: cannot open the video" in report.episodes[2].message
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert sorted(manifest["episodes"]) == ["0", "1"]
    assert manifest["failures"][0]["episode_index"] == 2


def test_bad_options_are_refused_before_any_work(tmp_path, written, scorer):
    with pytest.raises(DatasetError, match="a 'float32' feature, not a video"):
        score_dataset(
            scorer, SETTINGS, options(camera_keys=("observation.state",)), written.root, tmp_path / "a", progress=False
        )
    with pytest.raises(DatasetError, match=r"episodes \[7\] are not in the dataset"):
        score_dataset(scorer, SETTINGS, options(episodes=(1, 7)), written.root, tmp_path / "b", progress=False)
    old = tmp_path / "old"
    shutil.copytree(written.root, old)
    info = json.loads((old / "meta/info.json").read_text())
    info["codebase_version"] = "v2.1"
    (old / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError, match="only the v3 layout"):
        score_dataset(scorer, SETTINGS, options(), old, tmp_path / "c", progress=False)
    assert not any((tmp_path / d).exists() for d in "abc")


def test_cli_scores_a_dataset_and_names_the_cameras_when_unsure(tmp_path, written, tiny_model_dir, capsys):
    common = command_line(
        "--model {} --device cpu --dtype float32 --local-files-only --view-size {} --num-prefixes {} -q --no-plot",
        tiny_model_dir,
        VIEW,
        K,
    )
    assert main(["lerobot", str(written.root), "-o", str(tmp_path / "x"), *common]) == 2
    assert f"several video features ({FRONT}, {WRIST})" in capsys.readouterr().err
    out = tmp_path / "out"
    code = main([*command_line("lerobot {} -o {} --camera {} --episodes 1", written.root, out, WRIST), *common])
    assert code == 0
    assert "episode    1 scored" in capsys.readouterr().out
    rows = pq.read_table(out / PROGRESS_FILE).to_pydict()
    assert rows["index"] == written.episodes[1].index


# -- bags -----------------------------------------------------------------------------------


def test_bag_runs_write_the_progress_parquet_with_a_running_index_keyable_to_a_dataset(
    tmp_path, written, scorer, capsys
):
    # The bag holds the same three 3 s episodes at 10 Hz as the dataset fixture.
    layout = write_episodes_bag(tmp_path / "bag", "mcap", SCENES, duration_s=3.0)
    out = tmp_path / "out"
    opts = dict(camera_topics=("/camera/image_raw",), tick_rate_hz=2.0, plot=False, num_prefixes=K)
    report = score_bag(scorer, SETTINGS, opts, layout.path, out, progress=False)
    assert report.ok, report.summary()
    frames = pq.read_table(out / "frames.parquet")
    progress = pq.read_table(out / PROGRESS_FILE)
    assert progress.schema.remove_metadata() == PROGRESS_SCHEMA
    assert read_model_id(out / PROGRESS_FILE) == scorer.model_id
    assert progress.schema.metadata[b"topreward_ros.index"] == b"running"
    rows, table = progress.to_pydict(), frames.to_pydict()
    n = sum(len(e.primary_stamps_ns) for e in layout.episodes)
    assert n == 90
    assert rows["index"] == list(range(n))
    assert rows["episode_index"] == table["episode_index"] == [0] * 30 + [1] * 30 + [2] * 30
    assert rows["frame_index"] == table["frame_index"]
    assert rows["progress_sparse"] == pytest.approx(table["progress"], abs=0)
    # Keyed to the dataset converted from the same recording: its own index.
    dataset = LeRobotDatasetDir(written.root)
    assert dataset_index(dataset, frames).tolist() == list(range(90))
    keyed = tmp_path / "keyed.parquet"
    assert main(["lerobot-progress", str(out), "--dataset", str(written.root), "-o", str(keyed)]) == 0
    assert "90 frames keyed" in capsys.readouterr().out
    keyed_rows = pq.read_table(keyed).to_pydict()
    assert keyed_rows["index"] == [i for e in written.episodes for i in e.index]
    assert keyed_rows["progress_sparse"] == rows["progress_sparse"]
    assert read_model_id(keyed) == scorer.model_id
    assert pq.read_schema(keyed).metadata[b"topreward_ros.index"] == b"dataset"
    # Tables that do not line up are refused with the first mismatch named.
    moved = frames.set_column(0, "episode_index", pc.add(frames.column("episode_index"), 10))
    with pytest.raises(JoinError, match="episode 10 of the table is not in the dataset"):
        dataset_index(dataset, moved)
    slow = frames.set_column(2, "timestamp", pc.multiply(frames.column("timestamp"), 1.5))
    with pytest.raises(JoinError, match="episode 0 frame 2: timestamp 0.3000 s in the table"):
        dataset_index(dataset, slow)
    with pytest.raises(JoinError, match="episode 1: 29 frames in the table, 30 in the dataset"):
        dataset_index(
            dataset,
            frames.filter(
                pc.invert(
                    pc.and_(pc.equal(frames.column("episode_index"), 1), pc.equal(frames.column("frame_index"), 29))
                )
            ),
        )
    assert main(["lerobot-progress", str(tmp_path / "nothing"), "--dataset", str(written.root), "-o", str(keyed)]) == 2
    assert "no frames.parquet" in capsys.readouterr().err
