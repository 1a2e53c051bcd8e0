"""Old entry point, kept for one release: `python -m lab.runner` is `python -m lab.runs.local.runner`."""

import sys

from lab.runs.local.runner import main

if __name__ == "__main__":
    sys.exit(main())
