"""rosbag2 recordings: read and written without ROS, cut into episodes, replayed into a graph.

``reader`` and ``writer`` handle the files (MCAP or sqlite3), ``types`` the
message definitions, ``episodes`` where the node would cut a recording,
``inputs`` which bags a run names, ``replay`` plays a bag into a live graph,
``synthetic`` writes test bags, and ``base`` holds what needs no bag library.
Scoring a bag is ``sources.bag`` through ``offline``; the new success
thresholds are ``offline.relabel``.
"""
