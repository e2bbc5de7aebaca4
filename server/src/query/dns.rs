//! DNS discovery of StoreAPI endpoints, with Thanos's address prefixes:
//!
//! - `dns+host:port`: the A and AAAA records of `host`, each at `port`;
//! - `dnssrv+name`: the SRV records of `name`, then the A and AAAA records of each target, at
//!   the record's port (or at the address's own port when it has one: `dnssrv+name:port`);
//! - `dnssrvnoa+name`: the SRV records' targets and ports as they are, with no address lookup.
//!
//! An address without a prefix is used as it is. Names are looked up by the system's resolver
//! configuration (`/etc/resolv.conf`, `/etc/hosts`), or by the nameserver in
//! `GAUNTLET_DNS_NAMESERVER` (`ip:port`) when that is set. A name that does not exist resolves
//! to no endpoint; any other failure keeps what the name last resolved to, so a DNS outage does
//! not empty the querier's endpoint set.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};

/// The environment variable naming a nameserver (`ip:port`) to use instead of the system's.
pub const NAMESERVER_ENV: &str = "GAUNTLET_DNS_NAMESERVER";

/// How an address is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// `dns+`: A and AAAA records.
    Address,
    /// `dnssrv+`: SRV records, then the targets' A and AAAA records.
    Srv,
    /// `dnssrvnoa+`: SRV records only.
    SrvNoA,
}

/// The lookup an address asks for and the rest of it, or `None` for a plain address.
pub fn split(addr: &str) -> Option<(Lookup, &str)> {
    // `dnssrvnoa+` first: `dnssrv+` is not its prefix, but keep the longest names first anyway.
    [
        ("dnssrvnoa+", Lookup::SrvNoA),
        ("dnssrv+", Lookup::Srv),
        ("dns+", Lookup::Address),
    ]
    .into_iter()
    .find_map(|(prefix, lookup)| addr.strip_prefix(prefix).map(|rest| (lookup, rest)))
}

/// Splits `host:port`, `[v6]:port` or a bare host (port `None`).
pub fn host_port(rest: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (host, tail) = inner
            .split_once(']')
            .ok_or_else(|| format!("{rest:?}: no closing ]"))?;
        match tail {
            "" => (host, None),
            t => (host, Some(t.strip_prefix(':').unwrap_or(t))),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{rest:?}: no host name"));
    }
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| format!("{rest:?}: {p:?} is not a port"))?,
        ),
    };
    Ok((host, port))
}

/// Checks a prefixed address as [`Resolver::resolve`] will read it: `dns+` needs a port.
pub fn check(lookup: Lookup, rest: &str) -> Result<(), String> {
    let (_, port) = host_port(rest)?;
    if lookup == Lookup::Address && port.is_none() {
        return Err(format!(
            "dns+{rest}: missing port (dns+ looks up A/AAAA records and needs host:port)"
        ));
    }
    Ok(())
}

/// Resolves prefixed addresses, remembering each one's last good answer.
pub struct Dns {
    resolver: TokioResolver,
    last: Mutex<HashMap<String, Vec<String>>>,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns").finish_non_exhaustive()
    }
}

impl Dns {
    /// A resolver on the system's configuration, or on `GAUNTLET_DNS_NAMESERVER`.
    pub fn new() -> Result<Dns, String> {
        let builder = match std::env::var(NAMESERVER_ENV) {
            Ok(server) => {
                let addr: SocketAddr = server
                    .parse()
                    .map_err(|_| format!("{NAMESERVER_ENV}={server:?}: want ip:port"))?;
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                Resolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    TokioRuntimeProvider::default(),
                )
            }
            Err(_) => TokioResolver::builder_tokio()
                .map_err(|e| format!("reading the system's resolver configuration: {e}"))?,
        };
        let mut builder = builder;
        let opts = builder.options_mut();
        // Every address of a name, as Thanos's resolvers return them; and a lookup bounded so a
        // silent nameserver delays a refresh by seconds, not minutes.
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.timeout = std::time::Duration::from_secs(2);
        opts.attempts = 2;
        let resolver = builder
            .build()
            .map_err(|e| format!("starting the DNS resolver: {e}"))?;
        Ok(Dns {
            resolver,
            last: Mutex::new(HashMap::new()),
        })
    }

    /// `addrs` with every prefixed address replaced by what it resolves to now (or, when the
    /// lookup fails for another reason than the name not existing, by what it last resolved
    /// to). Lookups run concurrently.
    pub async fn resolve(&self, addrs: &[String]) -> Vec<String> {
        let lookups = addrs.iter().map(|addr| async move {
            let Some((lookup, rest)) = split(addr) else {
                return vec![addr.clone()];
            };
            match self.lookup(lookup, rest).await {
                Ok(found) => {
                    let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
                    if last.get(addr) != Some(&found) {
                        tracing::info!(address = %addr, resolved = ?found, "endpoint address resolved");
                    }
                    last.insert(addr.clone(), found.clone());
                    found
                }
                Err(e) => {
                    let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
                    let kept = last.get(addr).cloned().unwrap_or_default();
                    tracing::warn!(address = %addr, error = %e, kept = kept.len(), "endpoint address not resolved; the last answer is kept");
                    kept
                }
            }
        });
        futures::future::join_all(lookups)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    async fn lookup(&self, lookup: Lookup, rest: &str) -> Result<Vec<String>, String> {
        let (host, port) = host_port(rest)?;
        let mut out = Vec::new();
        match lookup {
            Lookup::Address => {
                let port = port.ok_or_else(|| format!("{rest:?}: missing port"))?;
                out.extend(self.addresses(host, port).await?);
            }
            Lookup::Srv | Lookup::SrvNoA => {
                let records = match self.resolver.srv_lookup(host).await {
                    Ok(l) => l,
                    Err(e) if absent(&e) => return Ok(Vec::new()),
                    Err(e) => return Err(format!("SRV lookup of {host}: {e}")),
                };
                for record in records.answers() {
                    let RData::SRV(srv) = &record.data else {
                        continue;
                    };
                    let target = srv.target.to_utf8();
                    let target = target.trim_end_matches('.');
                    let port = port.unwrap_or(srv.port);
                    if lookup == Lookup::SrvNoA {
                        out.push(join(target, port));
                    } else {
                        out.extend(self.addresses(target, port).await?);
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// `ip:port` for every A and AAAA record of `host` (an IP address is itself).
    async fn addresses(&self, host: &str, port: u16) -> Result<Vec<String>, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port).to_string()]);
        }
        match self.resolver.lookup_ip(host).await {
            Ok(ips) => Ok(ips
                .iter()
                .map(|ip| SocketAddr::new(ip, port).to_string())
                .collect()),
            Err(e) if absent(&e) => Ok(Vec::new()),
            Err(e) => Err(format!("address lookup of {host}: {e}")),
        }
    }
}

/// Whether a lookup failed because the name or the record does not exist.
fn absent(e: &NetError) -> bool {
    e.is_no_records_found() || e.is_nx_domain()
}

/// `host:port`, with an IPv6 host in brackets.
fn join(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port).to_string(),
        Err(_) => format!("{host}:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_ports_are_read_as_thanos_reads_them() {
        assert_eq!(
            split("dns+store:10901"),
            Some((Lookup::Address, "store:10901"))
        );
        assert_eq!(
            split("dnssrv+_grpc._tcp.store"),
            Some((Lookup::Srv, "_grpc._tcp.store"))
        );
        assert_eq!(
            split("dnssrvnoa+_grpc._tcp.store"),
            Some((Lookup::SrvNoA, "_grpc._tcp.store"))
        );
        assert_eq!(split("store:10901"), None);
        assert_eq!(host_port("store:10901"), Ok(("store", Some(10901))));
        assert_eq!(host_port("[::1]:10901"), Ok(("::1", Some(10901))));
        assert_eq!(
            host_port("_grpc._tcp.store"),
            Ok(("_grpc._tcp.store", None))
        );
        assert!(host_port("store:http").is_err());
        assert!(host_port(":10901").is_err());
        assert!(check(Lookup::Address, "store").is_err());
        assert!(check(Lookup::Srv, "_grpc._tcp.store").is_ok());
        assert!(check(Lookup::Srv, "_grpc._tcp.store:10901").is_ok());
        assert_eq!(join("::1", 1), "[::1]:1");
        assert_eq!(join("store", 1), "store:1");
    }

    #[tokio::test]
    async fn names_resolve_through_the_hosts_file_and_plain_addresses_pass() {
        let dns = Dns::new().unwrap();
        let got = dns
            .resolve(&["dns+localhost:10901".into(), "10.0.0.1:1".into()])
            .await;
        assert!(got.contains(&"127.0.0.1:10901".to_string()), "{got:?}");
        assert!(got.contains(&"10.0.0.1:1".to_string()), "{got:?}");
        assert!(
            got.iter()
                .all(|a| a == "10.0.0.1:1" || a.ends_with(":10901")),
            "{got:?}"
        );
    }
}
