"""The vocabulary every stage shares; imports nothing else of closebench.

errors.py      ClosebenchError and its kinds: each is one line and an exit status
lazy_exports.py  a package's names loaded from its modules on first use
addresses.py   addresses compared as addresses, written canonically
outcomes.py    the outcome classes and the attempt record every attacker writes
summary.py     figures derived from attempt records: what an attack cost the attacker
background.py  work in a thread, Ctrl-C (and SIGTERM) as an event
file_names.py  file names from labels: safe, one per label
safe_files.py  reading users' files; writing run directories without following links
"""
