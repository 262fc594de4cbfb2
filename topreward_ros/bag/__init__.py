"""Offline rosbag2 tools: scoring, replay, relabel export."""
