#!/usr/bin/env python3
"""A DNS server on 127.0.0.1 (UDP and TCP) answering from a zone file, for the querier's DNS
discovery tests, built on dnslib's server and zone resolver (PyPI `dnslib`).

    dns_server.py PORT ZONE_FILE [LIFETIME_SECONDS]

Prints "ready" once both listeners are up; names not in the zone get NXDOMAIN. Exits after
LIFETIME_SECONDS (300 by default) so a test that dies cannot leave it running.
"""
import sys
import time

from dnslib.server import DNSLogger, DNSServer
from dnslib.zoneresolver import ZoneResolver


def main():
    port = int(sys.argv[1])
    with open(sys.argv[2]) as f:
        zone = f.read()
    lifetime = float(sys.argv[3]) if len(sys.argv) > 3 else 300.0
    resolver = ZoneResolver(zone)
    quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
    servers = [
        DNSServer(resolver, port=port, address="127.0.0.1", logger=quiet, tcp=tcp)
        for tcp in (False, True)
    ]
    for s in servers:
        s.start_thread()
    print("ready", flush=True)
    deadline = time.monotonic() + lifetime
    while time.monotonic() < deadline and all(s.isAlive() for s in servers):
        time.sleep(0.2)
    for s in servers:
        s.stop()


if __name__ == "__main__":
    main()
