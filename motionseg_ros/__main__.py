"""``python -m motionseg_ros`` = the ``motionseg`` command."""

import sys

from motionseg_ros.cli import main

sys.exit(main())
