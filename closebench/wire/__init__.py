"""What connections looked like on the wire, read from pcaps: no lab, no root.

    pcap.py      a pcap's packets by connection (scapy), and a capture followed as it grows
    classify.py  an attempt's outcome from its packets, and kernel-socket records given the wire's

Imports closebench.core only. (closebench verify reads the same pcaps with a second, independent
reader: closebench/results/verify.py.)
"""
