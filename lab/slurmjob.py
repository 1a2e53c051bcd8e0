"""Old entry point, kept for one release: batch scripts written before lab 0.2 run `python -m lab.slurmjob SPEC`,
which is `python -m lab.runs.slurm.node SPEC`."""

import sys

from lab.runs.slurm.node import main

if __name__ == "__main__":
    sys.exit(main())
