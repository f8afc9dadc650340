"""``python -m migalab.pose``: the same as ``migalab-pose``."""

import sys

from migalab.pose import main

sys.exit(main())
