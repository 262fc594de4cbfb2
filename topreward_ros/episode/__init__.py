"""The episode core the node and every offline source share.

A camera frame arrives (``camera_view`` keeps it unconverted, ``images``
converts it to RGB when a sample needs it), episodes are cut where the node
would cut them (``cuts``), the frame window samples them (``window``), and
the runner scores ticks and ends episodes with a verdict (``runner``). The
camera message types the package reads are named once, in ``cameras``.
No ROS import: live and offline results agree because they run this code.
"""
