"""`python -m speakerops.train [overrides]`: the same as `speakerops train`."""

import sys

from speakerops.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
