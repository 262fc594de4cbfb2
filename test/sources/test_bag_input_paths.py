"""Which bags `topreward bag` scores: paths, directories of bags, list files, names.

Real bag files and directories are laid out on disk (small rosbags bags
and storage files); the checks compare the resolved bags and names with
what was written.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from topreward_ros.demo.scene import DEMO_SCENES
from topreward_ros.demo.synthetic_bag import write_episodes_bag
from topreward_ros.sources.bag_inputs import InputError, expand_inputs, is_bag_directory


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Path:
    """fleet/rig1 (bag dir), fleet/rig2 (bag dir), fleet/loose.mcap, fleet/notes.txt."""
    root = tmp_path_factory.mktemp("fleet")
    for name in ("rig1", "rig2"):
        write_episodes_bag(root / name, "mcap", DEMO_SCENES[:1], duration_s=0.5)
    (loose,) = (root / "rig1").glob("*.mcap")
    (root / "loose.mcap").write_bytes(loose.read_bytes())
    (root / "notes.txt").write_text("not a bag\n")
    (root / "empty_dir").mkdir()
    return root


def names(inputs) -> list[tuple[str, str]]:
    return [(b.name, b.path.name) for b in inputs.bags]


def test_one_bag_keeps_the_single_layout(fleet):
    one = expand_inputs([fleet / "rig1"])
    assert one.single and [b.path for b in one.bags] == [fleet / "rig1"]
    file_bag = expand_inputs([str(fleet / "loose.mcap")])
    assert file_bag.single and names(file_bag) == [("loose", "loose.mcap")]


def test_a_directory_of_bags_lists_subdirectories_and_files_in_name_order(fleet):
    inputs = expand_inputs([fleet])
    assert not inputs.single
    assert names(inputs) == [("loose", "loose.mcap"), ("rig1", "rig1"), ("rig2", "rig2")]


def test_several_paths_and_list_files_with_comments_and_relative_paths(fleet, tmp_path):
    several = expand_inputs([fleet / "rig2", fleet / "rig1"])
    assert not several.single and names(several) == [("rig2", "rig2"), ("rig1", "rig1")]
    listing = fleet / "bags.txt"
    listing.write_text(f"# fleet of the day\n\nrig2\n   # indented comment\nloose.mcap\n{fleet / 'rig1'}\n")
    for inputs in (expand_inputs([f"@{listing}"]), expand_inputs([], [listing])):
        assert not inputs.single
        assert names(inputs) == [("rig2", "rig2"), ("loose", "loose.mcap"), ("rig1", "rig1")]
    # A list naming one bag is still a fleet: the layout follows the form of the input.
    single_list = tmp_path / "one.txt"
    single_list.write_text(f"{fleet / 'rig1'}\n")
    assert not expand_inputs([f"@{single_list}"]).single


def test_duplicates_are_scored_once_and_clashing_names_are_told_apart(fleet, tmp_path):
    inputs = expand_inputs([fleet / "rig1", fleet / "rig1" / ".." / "rig1", fleet / "rig2"])
    assert names(inputs) == [("rig1", "rig1"), ("rig2", "rig2")]
    assert len(inputs.duplicates) == 1
    other = tmp_path / "elsewhere" / "rig1"
    write_episodes_bag(other, "mcap", DEMO_SCENES[:1], duration_s=0.5)
    clash = expand_inputs([fleet / "rig1", other])
    first, second = (b.name for b in clash.bags)
    assert first != second and first.startswith("rig1-") and second.startswith("rig1-")
    # The names are stable: a re-run finds the same output directories.
    assert [b.name for b in expand_inputs([fleet / "rig1", other]).bags] == [first, second]


def test_a_recording_without_metadata_is_one_bag_not_a_directory_of_bags(tmp_path):
    bag = tmp_path / "rec"
    write_episodes_bag(bag, "mcap", DEMO_SCENES[:1], duration_s=0.5)
    (bag / "metadata.yaml").unlink()
    (storage,) = bag.glob("*.mcap")
    assert is_bag_directory(bag)  # one storage file, no bag inside: a recording
    inputs = expand_inputs([bag])
    assert inputs.single and [b.path for b in inputs.bags] == [bag]
    # rosbag2 names a recording's (split) files <directory>_<N>: still one bag.
    storage.rename(bag / "rec_0.mcap")
    (bag / "rec_1.mcap").write_bytes((bag / "rec_0.mcap").read_bytes())
    assert is_bag_directory(bag)
    assert expand_inputs([bag]).single
    # Loose files under other names are bags of their own.
    (bag / "other.mcap").write_bytes((bag / "rec_0.mcap").read_bytes())
    assert not is_bag_directory(bag)
    assert names(expand_inputs([bag])) == [("other", "other.mcap"), ("rec_0", "rec_0.mcap"), ("rec_1", "rec_1.mcap")]


def test_bad_inputs_are_refused_with_the_reason(fleet, tmp_path):
    with pytest.raises(InputError, match="no such file or directory"):
        expand_inputs([tmp_path / "missing"])
    with pytest.raises(InputError, match="not a rosbag2 storage file"):
        expand_inputs([fleet / "notes.txt"])
    with pytest.raises(InputError, match="no bag found"):
        expand_inputs([fleet / "empty_dir"])
    empty_list = tmp_path / "empty.txt"
    empty_list.write_text("# nothing yet\n")
    with pytest.raises(InputError, match="names no path"):
        expand_inputs([f"@{empty_list}"])
    with pytest.raises(InputError, match="list file .*missing.txt"):
        expand_inputs([], [tmp_path / "missing.txt"])
    with pytest.raises(InputError, match="no input"):
        expand_inputs([])
