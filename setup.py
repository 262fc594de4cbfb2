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
    install_requires=["numpy", "pillow"],
    extras_require={
        "model": ["torch", "torchvision", "transformers>=5.0", "accelerate"],
        "bag": ["rosbags", "mcap", "mcap-ros2-support", "pyarrow", "tqdm"],
        "video": ["av"],
        "plot": ["matplotlib"],
        "scale": ["ray==2.60.0"],
    },
    package_data={package_name: ["py.typed", "resources/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
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
        ],
    },
)
