"""The ROS-free TOPReward scoring core (filled in by the core modules)."""
