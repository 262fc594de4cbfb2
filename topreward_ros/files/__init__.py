"""Files the package writes and reads beside its data, with no ROS import.

``atomic``: outputs that are complete or absent, and cheap identities of
input files for resumed runs. ``params_file``: ROS 2 parameters files, read
and written the same way for the node and the offline tools.
"""
