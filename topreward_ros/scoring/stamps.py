"""The package's time unit: stamps are integer nanoseconds.

ROS headers, rosbag2 and MCAP log times all count integer nanoseconds, and the
frame schedule decides slots from them without float rounding. Every module
that turns such a stamp into seconds (or seconds into a stamp) takes the
factor from here, so there is one definition of it.
"""

NS_PER_S = 1_000_000_000
