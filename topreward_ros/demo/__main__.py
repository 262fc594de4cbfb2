"""``python -m topreward_ros.demo`` (what ``make demo`` runs)."""

import sys

from topreward_ros.demo.run import main

sys.exit(main())
