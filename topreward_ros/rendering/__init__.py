"""Scores made visible: messages, the progress picture and video, plots, progress bars.

``messages`` maps a tick to TaskProgress / EpisodeSuccess / EpisodeResult for
both the node and the relabelled bag; ``picture`` and ``video`` draw the
progress overlay; ``plot`` draws an episode's curve; ``progress_bar`` reports
long offline runs. No ROS import.
"""
