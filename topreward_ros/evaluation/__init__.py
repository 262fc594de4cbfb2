"""``topreward eval``: scoring labelled episodes and calibrating success detection.

``labels`` reads the labels file, ``inputs`` names and reads the episodes
(bags through the bag tools, videos and frame folders through the
``topreward score`` readers), ``runner`` scores each episode and its
static-video control (resumable), ``report`` writes the tables, plots,
report and the calibrated parameters file, ``cli`` is the command.
"""
