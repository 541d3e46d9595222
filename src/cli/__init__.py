"""`speakerops <command> [key=value ...]` (see :mod:`speakerops.cli.base` for the convention).

The commands live in :mod:`~speakerops.cli.lifecycle`, :mod:`~speakerops.cli.service`,
:mod:`~speakerops.cli.project` and :mod:`~speakerops.cli.spoof`;
importing this package registers them all.
"""

from speakerops.cli import lifecycle, project, service, spoof  # noqa: F401  (registers the commands)
from speakerops.cli.base import COMMANDS, EXIT_ERROR, Call, Command, main, parse, usage

__all__ = ["COMMANDS", "EXIT_ERROR", "Call", "Command", "main", "parse", "usage"]
