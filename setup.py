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
    install_requires=["numpy", "pillow", "pyyaml"],
    extras_require={
        # torchvision: transformers builds the Qwen3-VL video processor only with it.
        "model": ["torch", "torchvision", "transformers>=5.0", "accelerate"],
        # Bags (rosbags: pure Python, no ROS), and the parquet / CSV tables of
        # `topreward bag` and `topreward lerobot`.
        "bag": ["rosbags", "mcap", "mcap-ros2-support", "pyarrow", "tqdm", "zstandard", "lz4"],
        "video": ["av"],
        "plot": ["matplotlib", "noto-cjk-sans-otc"],
        "scale": ["ray==2.60.0"],
    },
    package_data={package_name: ["py.typed", "resources/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        # The message definitions: the offline tools register them with rosbags to
        # write TaskProgress / EpisodeSuccess (progress.mcap) without a ROS build.
        (f"share/{package_name}/msg",
         ["msg/TaskProgress.msg", "msg/EpisodeSuccess.msg", "msg/EpisodeResult.msg"]),
    ],
    zip_safe=False,
    maintainer="topreward_ros maintainers",
    maintainer_email="maintainers@topreward-ros.dev",
    description="Zero-shot VLM task progress and success (TOPReward) for ROS 2.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "topreward = topreward_ros.cli:main",
            "scorer_node = topreward_ros.scorer_node:main",
            "managed_scorer_node = topreward_ros.scorer_node:main_managed",
            "stop_on_success = topreward_ros.examples.stop_on_success:main",
        ],
    },
)
