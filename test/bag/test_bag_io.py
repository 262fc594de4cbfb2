"""Bag reading and writing on real rosbag2 files (both storage formats), no model.

Covers the reader (healthy, damaged and odd bags), the cheap header-stamp
parser, the episode splitter's rules, the manifest / atomic-write logic, the
frame table schema and the TaskProgress MCAP export.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from topreward_ros.bag.base import bag_fingerprint
from topreward_ros.bag.reader import BagOpenError, BagReader, BagReadError, MessageDecodeError
from topreward_ros.bag.stamps import StampError, header_stamp_ns
from topreward_ros.bag.writer import BagWriteError, BagWriter, compressed_image_msg, image_msg, string_msg
from topreward_ros.demo.synthetic_bag import CameraSpec, write_episodes_bag
from topreward_ros.episode.cuts import EpisodeSplitter, StampCut
from topreward_ros.files.atomic import write_atomic
from topreward_ros.offline.manifest import Manifest, ManifestError
from topreward_ros.offline.tables import FRAME_SCHEMA, TableError, frame_table

STORAGES = ["mcap", "sqlite3"]
TWO_CAMERAS = (
    CameraSpec("/cam/front", "raw", "rgb8", rate_hz=10.0),
    CameraSpec("/cam/wrist/compressed", "compressed", rate_hz=15.0, offset_ns=7_000_000),
)


def storage_file(bag_dir: Path) -> Path:
    (file,) = [p for p in bag_dir.iterdir() if p.suffix in (".mcap", ".db3")]
    return file


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("bags")
    return {
        storage: write_episodes_bag(root / storage, storage, cameras=TWO_CAMERAS, duration_s=2.0)
        for storage in STORAGES
    }


# -- reading healthy bags ------------------------------------------------------------------


@pytest.mark.parametrize("storage", STORAGES)
def test_reader_returns_every_message_in_log_time_order_with_types(bags, storage):
    layout = bags[storage]
    with BagReader(layout.path) as reader:
        assert reader.storage == storage
        topics = reader.topics
        assert topics["/cam/front"].msgtype == "sensor_msgs/msg/Image"
        assert topics["/cam/wrist/compressed"].msgtype == "sensor_msgs/msg/CompressedImage"
        assert topics["/instruction"].msgtype == "std_msgs/msg/String"
        assert topics["/cam/front"].message_count == 2 * 20
        assert topics["/cam/wrist/compressed"].message_count == 2 * 30
        messages = list(reader.messages())
    assert len(messages) == 2 + 40 + 60
    log_times = [m.log_time_ns for m in messages]
    assert log_times == sorted(log_times)
    front = [m for m in messages if m.topic == "/cam/front"]
    stamps = [header_stamp_ns(m.data) for m in front]
    expected = [s for ep in layout.episodes for s in ep.primary_stamps_ns]
    assert stamps == expected


@pytest.mark.parametrize("storage", STORAGES)
def test_deserialised_images_match_what_was_written(tmp_path, storage):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    with BagWriter(tmp_path / "bag", storage) as writer:
        writer.write("/raw", image_msg(rgb, 5 * 10**9 + 7, "cam"), 100)
        writer.write("/jpeg", compressed_image_msg(rgb, 6 * 10**9 + 9, "cam", fmt="png"), 200)
        writer.write("/text", string_msg("pick up the cup"), 300)
    with BagReader(tmp_path / "bag") as reader:
        raw, png, text = list(reader.messages())
        raw_msg, png_msg = reader.deserialize(raw), reader.deserialize(png)
        assert reader.deserialize(text).data == "pick up the cup"
    assert header_stamp_ns(raw.data) == 5 * 10**9 + 7
    assert header_stamp_ns(png.data) == 6 * 10**9 + 9
    assert (raw_msg.height, raw_msg.width, raw_msg.encoding) == (48, 64, "rgb8")
    np.testing.assert_array_equal(np.asarray(raw_msg.data).reshape(48, 64, 3), rgb)
    assert png_msg.format == "png"


def test_single_storage_file_and_directory_without_metadata_are_readable(bags, tmp_path):
    layout = bags["mcap"]
    file = storage_file(layout.path)
    with BagReader(file) as reader:
        assert sum(1 for _ in reader.messages(["/cam/front"])) == 40
    bare = tmp_path / "no_metadata"
    shutil.copytree(layout.path, bare)
    (bare / "metadata.yaml").unlink()
    with BagReader(bare) as reader:
        assert any("metadata.yaml" in note for note in reader.notes)
        assert sum(1 for _ in reader.messages(["/cam/front"])) == 40


def test_header_stamp_parser_rejects_short_data():
    with pytest.raises(StampError, match="too short"):
        header_stamp_ns(b"\x00\x01\x00\x00\x01")


def test_unknown_type_without_definition_is_a_clear_decode_error(tmp_path, bags):
    with BagReader(bags["mcap"].path) as reader:
        message = next(iter(reader.messages(["/instruction"])))
        bogus = type(message)("/elsewhere", "nowhere_msgs/msg/Nothing", 0, message.data)
        with pytest.raises(MessageDecodeError, match="nowhere_msgs/msg/Nothing is unknown"):
            reader.deserialize(bogus)


# -- damaged and odd bags --------------------------------------------------------------------


def test_truncated_mcap_yields_the_readable_part_then_says_where_it_stopped(tmp_path):
    # Frames large enough that the bag spans several 1 MiB MCAP chunks (a
    # truncated file loses its last, incomplete chunk).
    layout = write_episodes_bag(
        tmp_path / "big", "mcap", duration_s=2.0, cameras=(CameraSpec("/cam", width=160, height=120),)
    )
    data = storage_file(layout.path).read_bytes()
    assert len(data) > 2 * 2**20
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with BagReader(cut) as reader:
        assert reader.recovered
        assert "truncated" in (reader.damage or "")
        got = []
        with pytest.raises(BagReadError, match="truncated") as info:
            for message in reader.messages():
                got.append(message)
    assert 0 < len(got) < 42
    assert info.value.messages_read == len(got)
    assert info.value.last_log_time_ns == got[-1].log_time_ns


def test_truncated_sqlite3_is_refused_with_the_reason(bags, tmp_path):
    data = storage_file(bags["sqlite3"].path).read_bytes()
    cut = tmp_path / "cut.db3"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(BagOpenError, match="cut.db3.*malformed"):
        BagReader(cut)


def _file(name: str, content: bytes):
    def make(d: Path) -> Path:
        (d / name).write_bytes(content)
        return d / name

    return make


def _empty_dir(d: Path) -> Path:
    (d / "dir").mkdir()
    return d / "dir"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.mcap", "no such file"),
        (_file("empty.mcap", b""), "empty"),
        (_file("junk.mcap", b"not a bag at all" * 10), "not a readable MCAP"),
        (_file("notes.txt", b"x"), "not a rosbag2"),
        (_empty_dir, "no rosbag2 storage file"),
    ],
    ids=["missing", "empty-file", "garbage", "wrong-suffix", "empty-dir"],
)
def test_unusable_paths_get_a_clear_error(tmp_path, make, message):
    with pytest.raises(BagOpenError, match=message):
        BagReader(make(tmp_path))


def test_writer_never_leaves_a_partial_bag(tmp_path):
    target = tmp_path / "bag"
    with pytest.raises(RuntimeError, match="boom"):
        with BagWriter(target, "mcap") as writer:
            writer.write("/text", string_msg("a"), 1)
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    with BagWriter(target, "mcap") as writer:
        writer.write("/text", string_msg("a"), 1)
    with pytest.raises(BagWriteError, match="already exists"):
        BagWriter(target, "mcap")
    with pytest.raises(BagWriteError, match="storage must be one of"):
        BagWriter(tmp_path / "other", "rosbag1")  # type: ignore[arg-type]


# -- episode splitting -----------------------------------------------------------------------


def test_splitter_follows_the_node_rules():
    s = EpisodeSplitter()
    assert s.on_reset(1) == []  # no instruction yet: nothing to restart
    events = s.on_instruction("pick", 10)
    assert [(e.action, e.instruction) for e in events] == [("start", "pick")]
    assert s.on_instruction("   ", 20) == []  # empty: ignored, episode goes on
    assert s.ignored_empty == 1
    events = s.on_instruction("pick", 30)  # same text again: a new episode, like the node
    assert [(e.action, e.reason) for e in events] == [("end", "instruction"), ("start", "instruction")]
    events = s.on_reset(40)
    assert [(e.action, e.instruction) for e in events] == [("end", "pick"), ("start", "pick")]
    events = s.on_stamp_cut(50, StampCut("back", 2.5))
    assert events[1].reason == "camera stamp jumped back by 2.500 s"
    events = s.on_stamp_cut(55, StampCut("forward", 1_700_000_000.25))
    assert [(e.action, e.instruction, e.reason) for e in events] == [
        ("end", "pick", "camera stamp jumped forward by 1700000000.250 s"),
        ("start", "pick", "camera stamp jumped forward by 1700000000.250 s"),
    ]
    events = s.on_instruction("place", 60)
    assert [(e.action, e.instruction) for e in events] == [("end", "pick"), ("start", "place")]
    assert [(e.action, e.log_time_ns) for e in s.finish(70)] == [("end", 70)]
    assert s.finish(80) == []


def test_splitter_fixed_instruction_ignores_the_topic():
    s = EpisodeSplitter("stack the cups")
    assert [e.instruction for e in s.begin(5)] == ["stack the cups"]
    assert s.on_instruction("something else", 6) == []
    assert [e.action for e in s.on_reset(7)] == ["end", "start"]
    with pytest.raises(ValueError, match="must not be empty"):
        EpisodeSplitter("  ")


# -- manifest and atomic writes ----------------------------------------------------------------


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")

    def explode(file):
        file.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, explode)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_manifest_refuses_other_bags_and_settings_and_force_overrides(tmp_path, bags):
    fp = bag_fingerprint(bags["mcap"].path)
    assert fp == bag_fingerprint(bags["mcap"].path)
    assert fp != bag_fingerprint(bags["sqlite3"].path)
    m = Manifest.open(tmp_path, Path("a"), fp, {"sample_fps": 2.0})
    (tmp_path / "episode_0000").mkdir()
    (tmp_path / "episode_0000" / "curve.json").write_text("{}")
    m.record_episode(0, {"instruction": "pick", "start_log_ns": 5, "files": ["episode_0000/curve.json"]})
    again = Manifest.open(tmp_path, Path("a"), fp, {"sample_fps": 2.0})
    assert again.completed(0, "pick", 5)
    assert not again.completed(0, "place", 5)
    assert not again.completed(1, "pick", 5)
    with pytest.raises(ManifestError, match="another input"):
        Manifest.open(tmp_path, Path("b"), "0" * 32, {"sample_fps": 2.0})
    with pytest.raises(ManifestError, match=r"sample_fps: 2.0 -> 1.0"):
        Manifest.open(tmp_path, Path("a"), fp, {"sample_fps": 1.0})
    assert Manifest.open(tmp_path, Path("a"), fp, {"sample_fps": 1.0}, force=True).episodes == {}
    (tmp_path / "episode_0000" / "curve.json").unlink()  # a lost file: the episode is redone
    assert not Manifest.open(tmp_path, Path("a"), fp, {"sample_fps": 2.0}).completed(0, "pick", 5)
    (tmp_path / "manifest.json").write_text("{ not json")
    with pytest.raises(ManifestError, match="unreadable"):
        Manifest.open(tmp_path, Path("a"), fp, {"sample_fps": 2.0})
    data = json.loads(json.dumps({"ok": True}))
    assert data == {"ok": True}


def test_frame_table_checks_its_columns():
    columns = {f.name: np.zeros(3) for f in FRAME_SCHEMA}
    assert frame_table(columns).schema == FRAME_SCHEMA
    with pytest.raises(TableError, match=r"missing \['reward'\]"):
        frame_table({k: v for k, v in columns.items() if k != "reward"})
    with pytest.raises(TableError, match="differ in length"):
        frame_table({**columns, "reward": np.zeros(2)})
