"""The task's /etc/resolv.conf for `network { dns }`, as Nomad's exec driver writes it: one
`nameserver` line per server, then `search`, then `options`; each field the job leaves empty
keeps the host's values."""

from __future__ import annotations

import os

from reconciler.executor.base import DnsConfig

# systemd-resolved's stub points at 127.0.0.53, which a task in its own network namespace cannot
# reach: its full file lists the real servers (Nomad reads the same one).
HOST_FILES = ("/run/systemd/resolve/resolv.conf", "/etc/resolv.conf")


def host_dns(paths: tuple[str, ...] = HOST_FILES) -> DnsConfig:
    for path in paths:
        if os.path.isfile(path):
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    return parse(f.read())
            except OSError:
                continue
    return DnsConfig()


def parse(text: str) -> DnsConfig:
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        if words[0] == "nameserver" and len(words) > 1:
            servers.append(words[1])
        elif words[0] in ("search", "domain"):
            searches = words[1:]  # the last search or domain line wins, as in glibc
        elif words[0] == "options":
            options += words[1:]
    return DnsConfig(tuple(servers), tuple(searches), tuple(options))


def render(job: DnsConfig, host: DnsConfig) -> str:
    servers = job.servers or host.servers
    searches = job.searches or host.searches
    options = job.options or host.options
    lines = [f"nameserver {s}" for s in servers]
    if searches:
        lines.append("search " + " ".join(searches))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"
