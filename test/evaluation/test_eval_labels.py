"""The labels file of `topreward eval` and the checks made before any scoring."""

from __future__ import annotations

from pathlib import Path

import pytest

from topreward_ros.evaluation.inputs import EvalInputError, check_labels, classify, classify_all
from topreward_ros.evaluation.labels import Label, LabelsError, read_labels


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_with_tasks_comments_and_zero_padded_bag_indices(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "labels.csv",
        "# my rig, 2026-11-30\nepisode,success,task,notes\n"
        "rig_bag/0003,1,pick,good\n\nrig_bag/4,no,pick,dropped\npick_07,TRUE,,\n",
    )
    labels = read_labels(path)
    assert labels == {
        "rig_bag/3": Label("rig_bag/3", True, "pick", None, f"{path}:3"),
        "rig_bag/4": Label("rig_bag/4", False, "pick", None, f"{path}:5"),
        "pick_07": Label("pick_07", True, None, None, f"{path}:6"),
    }


def test_yaml_mapping_and_list_forms(tmp_path: Path) -> None:
    mapping = write(
        tmp_path,
        "a.yaml",
        "rig_bag/0: 1\nrig_bag/1: {success: false, task: place}\n"
        "clip: {success: yes, instruction: put the cup on the plate}\n",
    )
    labels = read_labels(mapping)
    assert [(k, v.success, v.task, v.instruction) for k, v in labels.items()] == [
        ("rig_bag/0", True, None, None),
        ("rig_bag/1", False, "place", None),
        ("clip", True, None, "put the cup on the plate"),
    ]
    listed = write(tmp_path, "b.yml", "episodes:\n  - {episode: rig_bag/0, success: 0, task: t}\n")
    assert read_labels(listed)["rig_bag/0"].success is False


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("l.csv", "episode,task\na,b\n", r"lacks column\(s\) success"),
        ("l.csv", "episode,success\nbag/0,maybe\n", r"l.csv:2: success must be 1/0, true/false or yes/no, got 'maybe'"),
        (
            "l.csv",
            "episode,success\nbag/0,1\nbag/000,0\n",
            r"l.csv:3: episode 'bag/0' is labelled twice \(first at .*l.csv:2\)",
        ),
        ("l.csv", "episode,success\n,1\n", "the episode name is empty"),
        ("l.csv", "episode,success,task\nbag/0\n", r"1 field\(s\), the header has 3"),
        ("l.csv", "# nothing\n", "holds no labels"),
        ("l.yaml", "bag/0: 2\n", "success must be 1/0"),
        (
            "l.yaml",
            "bag/0: 1\nbag/1: 0\nbag/0: 0\n",
            r"l.yaml:3: episode 'bag/0' is labelled twice \(first at .*l.yaml:1\)",
        ),
        (
            "l.yaml",
            "episodes:\n  clip: 1\n  clip: {success: 0}\n",
            r"l.yaml:3: episode 'clip' is labelled twice \(first at .*l.yaml:2\)",
        ),
        ("l.yaml", "bag/0: 1\nbag/000: 0\n", r"episode 'bag/0' is labelled twice"),
        (
            "l.yaml",
            "- {episode: a, success: 1}\n- {episode: a, success: 0}\n",
            r"entry 2: episode 'a' is labelled twice \(first at .*entry 1\)",
        ),
        ("l.yaml", "clip: {success: 1, success: 0}\n", r"l.yaml:1: key 'success' is given twice in one mapping"),
        ("l.yaml", "bag/0: {sucess: 1}\n", "expected keys success"),
        ("l.yaml", "[1, 2]\n", "expected a mapping with episode and success"),
        ("l.yaml", "bag/0: [1\n", "not valid YAML"),
        ("l.yaml", "just text\n", "expected a mapping episode -> label"),
        ("l.txt", "episode,success\n", "use a .csv, .yaml or .yml file"),
    ],
)
def test_malformed_labels_are_refused_with_where_and_what(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(LabelsError, match=message):
        read_labels(write(tmp_path, name, text))


def test_missing_labels_file(tmp_path: Path) -> None:
    with pytest.raises(LabelsError, match="cannot read the labels file .*nope.csv"):
        read_labels(tmp_path / "nope.csv")


def make_inputs(tmp_path: Path) -> list:
    (tmp_path / "rig_bag").mkdir()
    (tmp_path / "rig_bag" / "metadata.yaml").write_text("x")
    (tmp_path / "frames_a").mkdir()
    (tmp_path / "clip.mp4").write_bytes(b"")
    (tmp_path / "other.mcap").write_bytes(b"")
    return classify_all([tmp_path / "rig_bag", tmp_path / "frames_a", tmp_path / "clip.mp4", tmp_path / "other.mcap"])


def test_inputs_are_named_by_kind(tmp_path: Path) -> None:
    assert [(i.kind, i.name) for i in make_inputs(tmp_path)] == [
        ("bag", "rig_bag"),
        ("frames", "frames_a"),
        ("video", "clip"),
        ("bag", "other"),
    ]
    with pytest.raises(EvalInputError, match="does not exist"):
        classify(tmp_path / "missing")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "clip.mp4").write_bytes(b"")
    with pytest.raises(EvalInputError, match="have the same name 'clip'"):
        classify_all([tmp_path / "clip.mp4", tmp_path / "x" / "clip.mp4"])


def test_a_directory_of_bags_and_a_list_file_stand_for_their_bags(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    for name in ("rig_b", "rig_a"):
        (fleet / name).mkdir(parents=True)
        (fleet / name / "metadata.yaml").write_text("x")
    (fleet / "loose.mcap").write_bytes(b"")
    (fleet / "notes").mkdir()  # neither a bag nor holding one: not an input
    frames = tmp_path / "frames_a"
    frames.mkdir()
    (frames / "000.png").write_bytes(b"")
    listed = tmp_path / "lists" / "eval.txt"
    listed.parent.mkdir()
    listed.write_text("# the frame folder, relative to this file\n../frames_a\n\n")
    inputs = classify_all([str(fleet), f"@{listed}"])
    assert [(i.kind, i.name, i.path) for i in inputs] == [
        ("bag", "loose", fleet / "loose.mcap"),
        ("bag", "rig_a", fleet / "rig_a"),
        ("bag", "rig_b", fleet / "rig_b"),
        ("frames", "frames_a", listed.parent / "../frames_a"),
    ]
    # A frame folder stays one input; a list naming nothing is refused.
    assert [(i.kind, i.name) for i in classify_all([frames])] == [("frames", "frames_a")]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(EvalInputError, match="names no path"):
        classify_all([f"@{tmp_path / 'empty.txt'}"])


def labels_of(*rows: tuple) -> dict[str, Label]:
    return {r[0]: Label(*r) for r in rows}


def test_label_checks_before_scoring(tmp_path: Path) -> None:
    inputs = make_inputs(tmp_path)
    ok = labels_of(
        ("rig_bag/0", True), ("other/12", False), ("frames_a", True, None, "pick"), ("clip", False, None, "pick")
    )
    check_labels(inputs, ok, None)
    with pytest.raises(EvalInputError, match=r"no input holds: 'nobag/1', 'rig_bag/x'"):
        check_labels(inputs, {**ok, **labels_of(("nobag/1", True), ("rig_bag/x", True))}, None)
    without_clip = {k: v for k, v in ok.items() if k != "clip"}
    with pytest.raises(EvalInputError, match="no label for 'clip'"):
        check_labels(inputs, without_clip, None)
    no_instruction = {**ok, **labels_of(("clip", False))}
    with pytest.raises(EvalInputError, match="no instruction for 'clip'"):
        check_labels(inputs, no_instruction, None)
    check_labels(inputs, no_instruction, "pick the cup")


def test_a_lerobot_dataset_is_one_input_of_many_episodes_named_by_episode_index(tmp_path: Path) -> None:
    """A directory holding meta/info.json is a dataset: labels name its episodes <name>/<episode_index>."""
    for name in ("ds_b", "ds_a"):
        (tmp_path / "datasets" / name / "meta").mkdir(parents=True)
        (tmp_path / "datasets" / name / "meta" / "info.json").write_text("{}")
        # A dataset's own folders hold no bag and no dataset: it stays one input.
        (tmp_path / "datasets" / name / "videos").mkdir()
    ds = tmp_path / "datasets" / "ds_a"
    assert classify(ds) == classify_all([ds])[0]
    assert (classify(ds).kind, classify(ds).name, classify(ds).multi_episode) == ("dataset", "ds_a", True)
    # A folder of datasets stands for them, in name order, as a folder of bags does.
    assert [(i.kind, i.name) for i in classify_all([tmp_path / "datasets"])] == [
        ("dataset", "ds_a"),
        ("dataset", "ds_b"),
    ]
    inputs = classify_all([ds])
    check_labels(inputs, labels_of(("ds_a/0", True), ("ds_a/12", False)), None)  # no instruction needed
    with pytest.raises(
        EvalInputError,
        match=r"no input holds: 'ds_a/x', 'ds_b/0'.*<dataset name>/"
        r"<episode_index> for LeRobot datasets \(ds_a\)",
    ):
        check_labels(inputs, labels_of(("ds_a/x", True), ("ds_b/0", True)), None)
