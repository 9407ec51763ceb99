#!/usr/bin/env python3
"""`hflabels guarantees` as a script of its own: the same arguments, the same output."""

import sys

from hflabels.cli import run_command

if __name__ == "__main__":
    sys.exit(run_command("guarantees"))
