"""``python -m rolloutsim``."""

import sys

from rolloutsim.cli import main

sys.exit(main())
