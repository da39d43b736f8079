"""Running trials: a server in a lab against attackers, one trial or a scenario of many.

    trial.py           one server in one lab against attackers and legitimate clients
    attempt_summaries.py  what its attempts cost the attacker, from memory or its attempts file
    scenario.py        the scenario schema and loader; scenarios/ the shipped ones
    runner.py          closebench run: trials in parallel, the run directory
    rows.py            a trial's row of summary.json, from its result
    disk_space.py      a run's reserve on its disk, and noticing a full disk
    probe.py           closebench probe: one abusive request per strategy, read from the wire
    remote.py          closebench attack --target: the Locust engine against a server elsewhere
    server_samples.py  closebench sample on the server's machine, merged by report --samples

Imports every stage below: core, wire, lab, defender, attackers, results.
"""
