"""`python -m closebench.cli`: what closebench re-executes inside a user namespace."""

import sys

from closebench.cli.main import main

sys.exit(main())
