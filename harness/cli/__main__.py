"""`python -m harness.cli`: what closebench re-executes inside a user namespace."""

import sys

from harness.cli.main import main

sys.exit(main())
