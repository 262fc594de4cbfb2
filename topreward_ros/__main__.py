"""`python -m topreward_ros` runs the `topreward` command."""

import sys

from topreward_ros.commands.cli import main

sys.exit(main())
