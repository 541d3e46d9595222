"""`python -m speakerops`: the same command line as the `speakerops` script."""

import sys

from speakerops.cli import main

sys.exit(main())
