"""topreward_ros: zero-shot task progress and success from a video VLM.

The scoring core (``topreward_ros.scoring``) is plain Python with no ROS
import; the scorer node, the rosbag tools and the ``topreward`` command are
thin adapters over it and share one windowing code path
(``topreward_ros.episode.window``), so live and offline scores agree.
"""

__version__ = "0.1.0"

# The generated messages (topreward_ros.msg) exist only in the colcon install
# tree. When this source directory comes first on sys.path (running from the
# checkout, pytest), let the package also search the installed copy.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)
