"""Running trials: one server in a lab against attackers and legitimate clients, a scenario of
many (`closebench run`), a probe, and an attack on a server elsewhere. Imports every stage below."""
