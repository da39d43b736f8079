"""`python -m closebench.servers.reference --strategy SPEC ...`: see options.py."""

import sys

from closebench.servers.reference.options import main

sys.exit(main())
