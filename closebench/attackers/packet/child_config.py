"""What the runner hands the child: one JSON line on its stdin, built with scapy in the runner.

The templates and the BPF program are made in the runner, so the child never imports scapy
unless a packet needs it (decode.py), and starts in a fraction of a second.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from closebench.attackers.packet import templates
from closebench.attackers.packet.connection import Profile, Settings
from closebench.attackers.packet.raw_sockets import IFNAME, compile_bpf, reply_filter
from closebench.attackers.packet.segments import Kind
from closebench.attackers.packet.templates import Template
from closebench.attackers.policy import Policy, Target
from closebench.attackers.rst_filter import PortRange

# How the profile is written in the JSON (bare-rst: the SYN flood's RST without ACK).
GIVE_UP = {"rst": Kind.RST_ACK, "fin": Kind.FIN, "bare-rst": Kind.RST}


@dataclass(frozen=True)
class ChildConfig:
    family: int
    sources: list[str]
    dst: str
    dport: int
    templates: list[list[dict]]  # per source, per Kind: Template.to_json()
    bpf: list[list[int]]  # [code, jt, jf, k] instructions for SO_ATTACH_FILTER
    request_len: int
    policy: dict  # the Policy's fields
    ports: str  # our source ports, LOW-HIGH
    give_up: str  # "rst", "fin" or "bare-rst": a key of GIVE_UP
    retransmits: bool
    base_time: float  # record times are microseconds since this Unix time
    ifname: str = IFNAME
    syn_only: bool = False  # a SYN flood (Profile.syn_only)

    @classmethod
    def build(
        cls,
        target: Target,
        policy: Policy,
        sources: list[str],
        ports: PortRange,
        profile: Profile,
        base_time: float,
    ) -> ChildConfig:
        request = target.request()
        made = [
            templates.build(target.family, s, target.address, target.port, request) for s in sources
        ]
        expression = reply_filter(
            target.family, target.address, target.port, sources, str(ports), profile.retransmits
        )
        give_up = next(name for name, kind in GIVE_UP.items() if kind is profile.give_up)
        return cls(
            family=target.family,
            sources=list(sources),
            dst=target.address,
            dport=target.port,
            templates=[[t.to_json() for t in per_source] for per_source in made],
            bpf=compile_bpf(expression),
            request_len=len(request),
            policy=asdict(policy),
            ports=str(ports),
            give_up=give_up,
            retransmits=profile.retransmits,
            base_time=base_time,
            syn_only=profile.syn_only,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ChildConfig:
        return cls(**json.loads(text))

    @property
    def port_range(self) -> PortRange:
        return PortRange.parse(self.ports)

    def the_policy(self) -> Policy:
        return Policy(**self.policy)

    def the_templates(self) -> list[list[Template]]:
        return [[Template.from_json(t) for t in each] for each in self.templates]

    def settings(self, isn_key: bytes) -> Settings:
        ports = self.port_range
        return Settings(
            timeout=self.policy["timeout"],
            request_len=self.request_len,
            low=ports.low,
            high=ports.high,
            sources=tuple(self.sources),
            request_delay=self.policy["request_delay"],
            profile=Profile(GIVE_UP[self.give_up], self.retransmits, self.syn_only),
            isn_key=isn_key,
        )
