"""``topreward eval``: scoring labelled episodes and calibrating success detection.

``labels`` reads the labels file, ``inputs`` names the inputs and their
episodes, ``runner`` turns each input into an episode source (by its kind
in ``sources.kinds``: bags, LeRobot datasets, videos and frame folders) and scores its episodes
and their static-video controls through the offline pipeline (resumable),
``outcome`` turns a finished run into its report files (episodes without
scores, problems, camera topics, stale files removed), ``report`` computes
the metrics and writes the table and the calibrated parameters file,
``plots`` draws the figures and ``report_markdown`` writes the report; the
command is ``commands.eval``. Nothing here imports ``commands``:
the command depends on this package, not the other way round.
"""
