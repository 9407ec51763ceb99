"""``python -m lab TOOL ...``: the lab's tools behind one command."""

import sys

from lab.cli import main

sys.exit(main())
