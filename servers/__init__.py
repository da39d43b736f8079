"""closebench 0.1's package name, kept for one release: `servers.*` is `closebench.servers.*`."""

import sys

from closebench.deprecated_names import alias

sys.modules[__name__] = alias("servers", "closebench.servers")
