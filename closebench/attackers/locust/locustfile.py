"""The locustfile closebench ships, for workers started by Locust's own command:

    locust -f "$(closebench locust-worker --locustfile)" --worker --master-host HOST

Its one user class takes its attack from the closebench master (closebench attack --engine locust),
exactly as the workers `closebench locust-worker --master HOST` starts do.
"""

from closebench.attackers.locust.user import SpamScript

__all__ = ["SpamScript"]
