import sys

from lab.train import main

sys.exit(main())
