"""The reference server's command line (`python -m closebench.servers.reference --strategy SPEC
...`): its options, checked, and the start."""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
from collections.abc import Callable, Sequence
from functools import partial

from closebench.servers.bans import BanError
from closebench.servers.bpf_maps import BpfError
from closebench.servers.reference.event_loop import Server
from closebench.servers.reference.log import PROG, log
from closebench.servers.reference.protocol import AbuseRules, Config
from closebench.servers.reference.startup import (
    StartupError,
    bind_listeners,
    check_tcp_repair,
    open_tarpit,
    set_nofile,
)
from closebench.servers.strategies import STRATEGIES, Option, StrategySpec, parse_spec

BPF_STRATEGIES = ("xdp-drop", "tc-drop")
MIN_NOFILE = 16  # stdio, two listeners, epoll, the signal wakeup pair, the reserve, headroom


def _checked(parse: Callable[[str], object]) -> Callable[[str], object]:
    """Turn a parser's ValueError into an argparse error that shows its message."""

    def convert(text: str) -> object:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _int_at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"expected a whole number, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and at most {maximum}" if maximum is not None else ""
            raise ValueError(f"must be at least {minimum}{upper}, got {value}")
        return value

    return parse


def _regex(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as exc:
        raise ValueError(f"bad regular expression {text!r}: {exc}") from None


def _literal(
    kind: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address],
) -> Callable[[str], str]:
    def parse(text: str) -> str:
        return str(kind(text))  # AddressValueError is a ValueError

    return parse


def strategies_epilog() -> str:
    def show(value: object) -> str:
        return str(value).lower() if isinstance(value, bool) else str(value)

    lines = ["strategies (SPEC is NAME[:key=value,...], e.g. repair:read_first=false):"]
    options: dict[str, Option] = {}  # each option once, though most strategies share them
    for strategy in STRATEGIES.values():
        lines.append(f"  {strategy.name:18}{strategy.summary}")
        options.update({o.name: o for o in strategy.options})
    lines.append("strategy options:")
    lines += [f"  {o.name + '=' + show(o.default):18}{o.help}" for o in options.values()]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="closebench reference server: serves 'ok' and closes abusive clients "
        "with the chosen strategy.",
        epilog=strategies_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--strategy", required=True, metavar="SPEC", type=_checked(parse_spec), help="see below")
    add("--port", type=_checked(_int_at_least(0, 65535)), default=8080, help="default 8080")
    add(
        "--bind4", type=_checked(_literal(ipaddress.IPv4Address)), default="0.0.0.0", metavar="ADDR"
    )
    add("--bind6", type=_checked(_literal(ipaddress.IPv6Address)), default="::", metavar="ADDR")
    add("--no-ipv6", action="store_true", help="do not listen on IPv6")
    add(
        "--abuse-path",
        type=_checked(_regex),
        default="^/spam",
        metavar="REGEX",
        help="requests whose target matches (re.search) are abusive; default ^/spam",
    )
    add(
        "--abuse-source",
        type=_checked(partial(ipaddress.ip_network, strict=False)),
        action="append",
        default=[],
        metavar="CIDR",
        help="treat clients from this network as abusive (repeatable, IPv4 or IPv6)",
    )
    add(
        "--basic-auth",
        type=_checked(_credentials),
        metavar="USER:PASSWORD",
        help="the abuse path asks for HTTP basic auth: a wrong pair is abusive, none gets 401",
    )
    add("--nofile", type=_checked(_int_at_least(MIN_NOFILE)), metavar="N", help="set RLIMIT_NOFILE")
    add(
        "--backlog", type=_checked(_int_at_least(1)), default=1024, metavar="N", help="default 1024"
    )
    add(
        "--ban-netns",
        metavar="PATH",
        help="fw-drop/fw-reject: add bans to the nftables sets of this network namespace (e.g. "
        "/proc/PID/ns/net of a router) instead of the server's own",
    )
    add(
        "--bpf-maps",
        metavar="DIR",
        help="xdp-drop/tc-drop: the directory where the program's ban maps are pinned",
    )
    return parser


def _credentials(text: str) -> str:
    user, colon, password = text.partition(":")
    if not colon or not user or not password or not text.isprintable():
        raise ValueError("give USER:PASSWORD, both non-empty, printable")
    return text


def make_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Config:
    spec: StrategySpec = args.strategy
    if spec.by_address and not args.abuse_source:
        when = "on the SYN" if spec.name == "zero-window" else "at accept"
        parser.error(
            f"{spec} acts {when}, before the request is read, so it needs "
            "--abuse-source CIDR (path rules need the request)"
        )
    firewall = spec.name in ("fw-drop", "fw-reject")
    if args.ban_netns and not firewall:
        parser.error("--ban-netns goes with fw-drop or fw-reject")
    bpf = spec.name in BPF_STRATEGIES
    if bool(args.bpf_maps) != bpf:
        parser.error(
            "xdp-drop and tc-drop need --bpf-maps DIR (closebench gives it)"
            if bpf
            else "--bpf-maps goes with xdp-drop or tc-drop"
        )
    if firewall and spec.options["where"] == "router" and not args.ban_netns:
        parser.error(
            "where=router bans on the router: give its network namespace with --ban-netns PATH "
            "(closebench does)"
        )
    return Config(
        spec=spec,
        port=args.port,
        bind4=args.bind4,
        bind6=None if args.no_ipv6 else args.bind6,
        rules=AbuseRules(args.abuse_path, tuple(args.abuse_source), args.basic_auth),
        backlog=args.backlog,
        ban_netns=args.ban_netns,
        bpf_maps=args.bpf_maps,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    config = make_config(parser, args)
    tarpit = None
    try:
        if args.nofile is not None:
            set_nofile(args.nofile)
        if "repair" in (config.spec.name, config.spec.options.get("then")):
            check_tcp_repair()
        if config.spec.name == "zero-window":
            # Before listening: whoever sees the port listen may send its SYN at once.
            tarpit = open_tarpit(config)
        listeners = bind_listeners(config)
    except StartupError as exc:
        if tarpit is not None:
            tarpit.close()
        log(f"error: {exc}")
        return 2
    server = Server(config, listeners)
    if tarpit is not None:
        server.attach_tarpit(tarpit)
    if config.spec.name in ("fw-drop", "fw-reject", *BPF_STRATEGIES):
        try:
            server.start_banner()
        except (BanError, BpfError) as exc:
            log(f"error: {exc}")
            return 2
    summary = server.run()
    print(json.dumps(summary), flush=True)
    return 0
