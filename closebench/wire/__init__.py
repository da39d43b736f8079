"""What connections looked like on the wire, read from pcaps: no lab, no root. Imports
closebench.core only (closebench verify reads the same pcaps with a second, independent reader:
closebench/results/verify.py)."""
