"""`python -m speakerops`: the same command line as the `speakerops` script."""

import sys

from speakerops.cli import main

if __name__ == "__main__":
    sys.exit(main())
