"""closebench 0.1's package name, kept for one release: every `harness.*` is `closebench.*`."""

import sys

from closebench.deprecated_names import alias

sys.modules[__name__] = alias("harness", "closebench")
