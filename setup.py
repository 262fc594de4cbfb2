"""Python packaging for topreward_ros.

colcon builds this package through CMakeLists.txt (ament_cmake), because the
messages need rosidl. This setup.py serves the other way in: `pip install .`
gives the ROS-free scoring core and the `topreward` command (offline bag
scoring, video scoring) to users without a ROS install.
"""

from setuptools import find_packages, setup

package_name = "topreward_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=[package_name, f"{package_name}.*"]),
    python_requires=">=3.10",
    # No ROS package here: rclpy and the messages come from a ROS 2 install
    # (or the wheels of requirements/ros*.txt) and only the node needs them.
    # The versions the test suite runs with (requirements/*.txt pins them exactly);
    # "~=" lets pip take their patch releases, nothing newer untested.
    # test/package/test_package_lint.py keeps the two in step.
    install_requires=["numpy~=2.4.6", "pillow~=13.0.0", "pyyaml~=6.0.3"],
    extras_require={
        # torchvision: transformers builds the Qwen3-VL video processor only with it.
        "model": ["torch~=2.14.1", "torchvision~=0.29.1", "transformers~=5.23.0", "accelerate~=1.15.0"],
        # Bags (rosbags: pure Python, no ROS), and the parquet / CSV tables of
        # `topreward bag` and `topreward lerobot`.
        "bag": [
            "rosbags~=0.11.9",
            "mcap~=1.6.0",
            "mcap-ros2-support~=0.6.0",
            "pyarrow~=26.0.1",
            "tqdm~=4.70.1",
            "zstandard~=0.25.0",
            "lz4~=4.4.5",
        ],
        "video": ["av~=18.1.0"],
        "plot": ["matplotlib~=3.11.2", "noto-cjk-sans-otc~=0.0.1"],
        "scale": ["ray==2.60.0"],
    },
    package_data={package_name: ["py.typed", "resources/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        # The message definitions: the offline tools register them with rosbags to
        # write TaskProgress / EpisodeSuccess (progress.mcap) without a ROS build.
        (f"share/{package_name}/msg", ["msg/TaskProgress.msg", "msg/EpisodeSuccess.msg", "msg/EpisodeResult.msg"]),
    ],
    zip_safe=False,
    maintainer="topreward_ros maintainers",
    maintainer_email="maintainers@topreward-ros.dev",
    description="Zero-shot VLM task progress and success (TOPReward) for ROS 2.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "topreward = topreward_ros.commands.cli:main",
            "scorer_node = topreward_ros.node.scorer_node:main",
            "managed_scorer_node = topreward_ros.node.managed:main_managed",
            "stop_on_success = topreward_ros.examples.stop_on_success:main",
        ]
    },
)
