"""The exit codes of every ``earshot`` command, in one place.

The README's command table lists them per command; scripts may rely on them.

| code | name | meaning |
|---|---|---|
| 0 | ``OK`` | the command did its job |
| 1 | ``FAILED`` | the job failed (an alert undeliverable or pending, a refit refused) |
| 2 | ``USAGE`` | bad config, bad environment variable or bad command-line usage |
| 3 | ``SOURCES_FAILED`` | every source failed to poll |
| 4 | ``DATABASE_UNREACHABLE`` | the database could not be reached (host, port, database named) |
"""

from __future__ import annotations

from typing import Final

#: The command did its job.
OK: Final = 0
#: The job itself failed (an alert undeliverable or still pending, a refit refused...).
FAILED: Final = 1
#: Bad config, bad environment variable or bad command-line usage.
USAGE: Final = 2
#: Every source failed to poll.
SOURCES_FAILED: Final = 3
#: The database could not be reached.
DATABASE_UNREACHABLE: Final = 4
