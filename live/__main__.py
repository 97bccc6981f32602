"""``python -m live live|bench|calibrate ...``: the live subcommands before the CLI wires them."""

from __future__ import annotations

import sys

from live.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
