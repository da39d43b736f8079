"""What a run leaves behind, and everything that reads it: no lab, no root.

    schema.py           summary.json: its schema name and its row (TrialRow), rows checked
    records.py          attempts/*.parquet, and JSON lines: the one writer and reader of records
    run_directory.py    a run directory's files, written and read: the one loader
    summary_figures.py  the row's numeric figures: which direction is worse, what change is noise
    verify.py           closebench verify: the records against the pcaps, read again with dpkt
    compare.py          closebench compare: two runs, figure by figure, against the noise
    compare_page.py     ... its terminal table and HTML page (templates/compare.html.j2)
    check.py            closebench check: expectations in TOML, baseline regressions
    report/             the report: tables, ranking, prose, the page (templates/report.html.j2)
    figures/            the report's matplotlib figures, one colour per strategy
    pages.py            the Jinja environment of the HTML pages

Imports closebench.core, and what the report says of peers (closebench.defender.peers.notes).
"""
