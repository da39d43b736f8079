"""What a run leaves behind and everything that reads it: summary.json's schema, the attempt
records, verify, compare, check and the report. No lab, no root; imports closebench.core (and the
peers' notes from closebench.defender.peers)."""
