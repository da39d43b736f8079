"""`python -m servers.reference --strategy SPEC ...`: see servers/reference/command.py."""

import sys

from servers.reference.command import main

sys.exit(main())
