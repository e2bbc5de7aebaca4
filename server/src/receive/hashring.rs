//! Thanos Receive's hashrings: which receivers own a series. The configuration is Thanos's
//! hashrings JSON, and placement follows thanos-io/thanos `pkg/receive/hashring.go` exactly
//! (hash, `hashmod`, `ketama` with availability zones, tenant matching), so Gauntlet and Thanos
//! receivers in one ring agree on every series' owners. The rules are written down in
//! `docs/formats/remote-write.md` ("Hashring and replication").

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Deserializer};
use xxhash_rust::xxh64::{Xxh64, xxh64};

/// Sections (virtual nodes) per endpoint on a ketama ring (Thanos's `SectionsPerNode`).
pub const SECTIONS_PER_NODE: usize = 1000;

/// The byte Thanos puts after the tenant and after every label name and value.
const SEP: u8 = 0xFF;

/// How a hashring places series on its endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// `(hash + n) % endpoints` over the endpoints sorted by address.
    #[default]
    Hashmod,
    /// Consistent hashing with [`SECTIONS_PER_NODE`] sections per endpoint, zone-aware.
    Ketama,
}

impl Algorithm {
    /// The algorithm a name (`hashmod`, `ketama`) stands for.
    pub fn parse(name: &str) -> Option<Algorithm> {
        match name {
            "hashmod" => Some(Algorithm::Hashmod),
            "ketama" => Some(Algorithm::Ketama),
            _ => None,
        }
    }
}

/// Why a hashrings configuration cannot be used, or a series has no owner.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HashringError {
    /// The text is not a JSON list of hashrings; fix the file (the last good ring stays).
    #[error("hashrings configuration is not parsable: {0}")]
    Parse(#[from] serde_json::Error),
    /// The list is empty, which Thanos refuses too.
    #[error("hashrings configuration is empty")]
    Empty,
    /// An endpoint object without `address`.
    #[error("hashring {ring:?}: endpoint address must be set")]
    EmptyAddress {
        /// The hashring's name.
        ring: String,
    },
    /// `hashmod` with availability zones (Thanos's own wording).
    #[error(
        "hashring {ring:?}: Hashmod algorithm does not support AZ aware hashring configuration. Either use Ketama or remove AZ configuration."
    )]
    ZonesWithHashmod {
        /// The hashring's name.
        ring: String,
    },
    /// A ketama ring needs at least as many endpoints as replicas of each series.
    #[error(
        "hashring {ring:?}: ketama: amount of endpoints needs to be larger than replication factor ({endpoints} endpoints, replication factor {replication_factor})"
    )]
    TooFewEndpoints {
        /// The hashring's name.
        ring: String,
        /// Endpoints listed.
        endpoints: usize,
        /// `--receive.replication-factor`.
        replication_factor: u64,
    },
    /// The zones cannot give every section its replicas under Thanos's balancing rule (Thanos
    /// itself would loop forever on such a ring); add endpoints or zones.
    #[error(
        "hashring {ring:?}: the availability zones cannot hold {replication_factor} replicas of a section while staying balanced"
    )]
    Unbalanceable {
        /// The hashring's name.
        ring: String,
        /// `--receive.replication-factor`.
        replication_factor: u64,
    },
    /// Shuffle sharding picks a per-tenant subset of the ring; Gauntlet does not, so it refuses
    /// a ring that asks for it rather than place series where Thanos would not.
    #[error("hashring {ring:?}: shuffle_sharding_config is not supported by Gauntlet")]
    ShuffleSharding {
        /// The hashring's name.
        ring: String,
    },
    /// Asked for replica `want - 1` of a ring with fewer endpoints.
    #[error("insufficient nodes; have {have}, want {want}")]
    InsufficientNodes {
        /// Endpoints in the ring.
        have: u64,
        /// Replicas asked for.
        want: u64,
    },
    /// No hashring lists the tenant and none is a default ring.
    #[error("no matching hashring to handle tenant {tenant:?}")]
    NoMatchingHashring {
        /// The tenant.
        tenant: String,
    },
    /// A `glob` tenant pattern is malformed (as Go's `filepath.Match` judges).
    #[error(
        "error matching tenant pattern {pattern:?} (tenant {tenant:?}): syntax error in pattern"
    )]
    BadPattern {
        /// The pattern.
        pattern: String,
        /// The tenant being matched.
        tenant: String,
    },
}

/// One element of the hashrings JSON list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct HashringConfig {
    /// The ring's name (`hashring`), used in metrics.
    #[serde(default, rename = "hashring", deserialize_with = "nullable")]
    pub name: String,
    /// Tenants routed to this ring; none makes it a default ring for every tenant.
    #[serde(default, deserialize_with = "nullable")]
    pub tenants: Vec<String>,
    /// `exact` (also when empty) or `glob`; any other value matches no tenant, as in Thanos.
    #[serde(default, deserialize_with = "nullable")]
    pub tenant_matcher_type: String,
    /// The receivers of the ring.
    #[serde(default, deserialize_with = "nullable")]
    pub endpoints: Vec<Endpoint>,
    /// `hashmod` or `ketama`; empty takes `--receive.hashrings-algorithm`, anything else falls
    /// back to hashmod as Thanos does.
    #[serde(default, deserialize_with = "nullable")]
    pub algorithm: String,
    /// Extra external labels for the ring's tenants (read, not applied yet).
    #[serde(default, deserialize_with = "nullable")]
    pub external_labels: BTreeMap<String, String>,
    /// Only its `shard_size` is read: above 0 the ring is refused.
    #[serde(default, deserialize_with = "nullable")]
    pub shuffle_sharding_config: ShuffleSharding,
}

/// The part of Thanos's `shuffle_sharding_config` Gauntlet looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ShuffleSharding {
    /// Endpoints per tenant; 0 means no shuffle sharding.
    #[serde(default)]
    pub shard_size: u64,
}

/// A receiver of a ring: a gRPC address, optionally in an availability zone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// `host:port` of its gRPC server (`thanos.WriteableStore`).
    pub address: String,
    /// Availability zone; empty when not given.
    pub az: String,
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Thanos takes either a bare address or an object; the Cap'n Proto address of the
        // object is for a replication protocol Gauntlet does not speak.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Address(String),
            Object {
                #[serde(default, deserialize_with = "nullable")]
                address: String,
                #[serde(default, deserialize_with = "nullable")]
                az: String,
            },
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Address(address) => Endpoint {
                address,
                az: String::new(),
            },
            Raw::Object { address, az } => Endpoint { address, az },
        })
    }
}

/// JSON `null` as the type's default, as Go's decoder leaves a field at its zero value.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Parses the hashrings JSON (`--receive.hashrings-file` or `--receive.hashrings`).
pub fn parse(json: &str) -> Result<Vec<HashringConfig>, HashringError> {
    let cfg: Vec<HashringConfig> = serde_json::from_str(json)?;
    if cfg.is_empty() {
        return Err(HashringError::Empty);
    }
    for c in &cfg {
        if c.endpoints.iter().any(|e| e.address.is_empty()) {
            return Err(HashringError::EmptyAddress {
                ring: c.name.clone(),
            });
        }
    }
    Ok(cfg)
}

/// Thanos's series hash (`labelpb.HashWithPrefix`): xxhash64 of the tenant, 0xFF, then each
/// label's name, 0xFF, value, 0xFF, in the order the request lists them.
pub fn series_hash(tenant: &str, labels: &[(&str, &str)]) -> u64 {
    let mut h = Xxh64::new(0);
    h.update(tenant.as_bytes());
    h.update(&[SEP]);
    for (name, value) in labels {
        h.update(name.as_bytes());
        h.update(&[SEP]);
        h.update(value.as_bytes());
        h.update(&[SEP]);
    }
    h.digest()
}

/// One hashring, built: its endpoints and, for ketama, its sorted sections.
#[derive(Debug)]
pub struct Ring {
    /// The ring's name.
    pub name: String,
    /// Its algorithm.
    pub algorithm: Algorithm,
    /// Hashmod: sorted by address. Ketama: in configuration order (sections refer to them).
    endpoints: Vec<Endpoint>,
    /// Ketama only: section hashes, ascending.
    section_hashes: Vec<u64>,
    /// Ketama only: `replication_factor` endpoint indexes per section, replica by replica.
    section_replicas: Vec<u32>,
    replication_factor: usize,
}

impl Ring {
    fn new(
        cfg: &HashringConfig,
        default_algorithm: Algorithm,
        replication_factor: u64,
    ) -> Result<Ring, HashringError> {
        let algorithm = if cfg.algorithm.is_empty() {
            default_algorithm
        } else {
            Algorithm::parse(&cfg.algorithm).unwrap_or_else(|| {
                tracing::warn!(hashring = %cfg.name, algorithm = %cfg.algorithm, "unrecognizable hashring algorithm; falling back to hashmod, as Thanos does");
                Algorithm::Hashmod
            })
        };
        if cfg.shuffle_sharding_config.shard_size > 0 {
            return Err(HashringError::ShuffleSharding {
                ring: cfg.name.clone(),
            });
        }
        let mut ring = Ring {
            name: cfg.name.clone(),
            algorithm,
            endpoints: cfg.endpoints.clone(),
            section_hashes: Vec::new(),
            section_replicas: Vec::new(),
            replication_factor: replication_factor as usize,
        };
        match algorithm {
            Algorithm::Hashmod => {
                if ring.endpoints.iter().any(|e| !e.az.is_empty()) {
                    return Err(HashringError::ZonesWithHashmod { ring: ring.name });
                }
                ring.endpoints.sort_by(|a, b| a.address.cmp(&b.address));
            }
            Algorithm::Ketama => ring.build_sections(SECTIONS_PER_NODE)?,
        }
        Ok(ring)
    }

    /// Lays out `per_node` sections per endpoint, hashed `xxhash64("<address>:<i>")` for i
    /// from 1, sorted by hash, and gives each section its replicas: walking clockwise from it,
    /// the first endpoints not yet chosen whose zone is not ahead of the least used zone.
    fn build_sections(&mut self, per_node: usize) -> Result<(), HashringError> {
        let rf = self.replication_factor;
        if self.endpoints.len() < rf {
            return Err(HashringError::TooFewEndpoints {
                ring: self.name.clone(),
                endpoints: self.endpoints.len(),
                replication_factor: rf as u64,
            });
        }
        let mut zones: Vec<&str> = self.endpoints.iter().map(|e| e.az.as_str()).collect();
        zones.sort_unstable();
        zones.dedup();
        let zone_of: Vec<usize> = self
            .endpoints
            .iter()
            .map(|e| zones.binary_search(&e.az.as_str()).unwrap_or(0))
            .collect();
        let mut sections: Vec<(u64, u32)> = Vec::with_capacity(self.endpoints.len() * per_node);
        let mut key = String::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            for s in 1..=per_node {
                key.clear();
                key.push_str(&e.address);
                key.push(':');
                key.push_str(itoa::Buffer::new().format(s));
                sections.push((xxh64(key.as_bytes(), 0), i as u32));
            }
        }
        // Equal hashes come only from an address listed twice; either copy is the same
        // address, so the order among them does not change an answer.
        sections.sort_by_key(|s| s.0);
        let n = sections.len();
        let mut replicas = Vec::with_capacity(n * rf);
        let mut chosen: Vec<u32> = Vec::with_capacity(rf);
        let mut spread = vec![0u64; zones.len()];
        for start in 0..n {
            chosen.clear();
            spread.iter_mut().for_each(|c| *c = 0);
            let mut j = start;
            let mut since_pick = 0;
            while chosen.len() < rf {
                if since_pick > n {
                    return Err(HashringError::Unbalanceable {
                        ring: self.name.clone(),
                        replication_factor: rf as u64,
                    });
                }
                let endpoint = sections[j].1;
                j = (j + 1) % n;
                since_pick += 1;
                if chosen.contains(&endpoint) {
                    continue;
                }
                let zone = zone_of[endpoint as usize];
                let least = spread.iter().copied().min().unwrap_or(0);
                if spread.len() > 1 && spread[zone] > 0 && spread[zone] > least {
                    continue;
                }
                chosen.push(endpoint);
                spread[zone] += 1;
                since_pick = 0;
            }
            replicas.extend_from_slice(&chosen);
        }
        self.section_hashes = sections.iter().map(|s| s.0).collect();
        self.section_replicas = replicas;
        Ok(())
    }

    /// The endpoint holding replica `n` (from 0) of the series with [`series_hash`] `hash`.
    pub fn get_n(&self, hash: u64, n: u64) -> Result<&Endpoint, HashringError> {
        Ok(&self.endpoints[self.index_n(hash, n)?])
    }

    /// As [`Ring::get_n`], the endpoint's index in [`Ring::endpoints`].
    pub fn index_n(&self, hash: u64, n: u64) -> Result<usize, HashringError> {
        let have = self.endpoints.len() as u64;
        let insufficient = HashringError::InsufficientNodes { have, want: n + 1 };
        if n >= have {
            return Err(insufficient);
        }
        match self.algorithm {
            Algorithm::Hashmod => Ok((hash.wrapping_add(n) % have) as usize),
            Algorithm::Ketama => {
                if n as usize >= self.replication_factor {
                    return Err(insufficient);
                }
                let mut i = self.section_hashes.partition_point(|&h| h < hash);
                if i == self.section_hashes.len() {
                    i = 0;
                }
                Ok(self.section_replicas[i * self.replication_factor + n as usize] as usize)
            }
        }
    }

    /// The ring's endpoints.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Whether `address` is one of the ring's endpoints.
    pub fn contains(&self, address: &str) -> bool {
        self.endpoints.iter().any(|e| e.address == address)
    }
}

/// Which tenants a ring takes.
#[derive(Debug)]
enum TenantSet {
    /// No tenants listed: the ring is a default ring.
    All,
    Exact(HashSet<String>),
    Glob(Vec<String>),
    /// A matcher type Thanos does not know: it matches nothing.
    Never,
}

impl TenantSet {
    fn new(cfg: &HashringConfig) -> TenantSet {
        if cfg.tenants.is_empty() {
            return TenantSet::All;
        }
        match cfg.tenant_matcher_type.as_str() {
            "" | "exact" => TenantSet::Exact(cfg.tenants.iter().cloned().collect()),
            "glob" => TenantSet::Glob(cfg.tenants.clone()),
            _ => TenantSet::Never,
        }
    }

    fn matches(&self, tenant: &str) -> Result<bool, HashringError> {
        match self {
            TenantSet::All => Ok(true),
            TenantSet::Exact(set) => Ok(set.contains(tenant)),
            TenantSet::Glob(patterns) => {
                for p in patterns {
                    match glob_match(p.as_bytes(), tenant.as_bytes()) {
                        Ok(true) => return Ok(true),
                        Ok(false) => {}
                        Err(BadPattern) => {
                            return Err(HashringError::BadPattern {
                                pattern: p.clone(),
                                tenant: tenant.to_string(),
                            });
                        }
                    }
                }
                Ok(false)
            }
            TenantSet::Never => Ok(false),
        }
    }
}

/// Every hashring of a configuration, in its order: a tenant goes to the first ring that
/// takes it.
#[derive(Debug)]
pub struct Hashrings {
    rings: Vec<(TenantSet, Arc<Ring>)>,
    /// Per ring: its name, endpoints and tenants listed (`thanos_receive_hashring_nodes`,
    /// `thanos_receive_hashring_tenants`).
    pub sizes: Vec<(String, usize, usize)>,
}

impl Hashrings {
    /// Builds the rings of `cfg`; `algorithm` applies to rings that do not name one.
    pub fn new(
        cfg: &[HashringConfig],
        algorithm: Algorithm,
        replication_factor: u64,
    ) -> Result<Hashrings, HashringError> {
        let mut rings = Vec::with_capacity(cfg.len());
        for c in cfg {
            if !c.external_labels.is_empty() {
                tracing::warn!(hashring = %c.name, "external_labels of a hashring are not applied by Gauntlet; the tenants' external labels stay --label plus the tenant label");
            }
            rings.push((
                TenantSet::new(c),
                Arc::new(Ring::new(c, algorithm, replication_factor)?),
            ));
        }
        Ok(Hashrings {
            sizes: cfg
                .iter()
                .map(|c| (c.name.clone(), c.endpoints.len(), c.tenants.len()))
                .collect(),
            rings,
        })
    }

    /// The ring that takes `tenant`.
    pub fn ring_for(&self, tenant: &str) -> Result<&Arc<Ring>, HashringError> {
        for (tenants, ring) in &self.rings {
            if tenants.matches(tenant)? {
                return Ok(ring);
            }
        }
        Err(HashringError::NoMatchingHashring {
            tenant: tenant.to_string(),
        })
    }

    /// Every endpoint address of every ring.
    pub fn addresses(&self) -> HashSet<&str> {
        self.rings
            .iter()
            .flat_map(|(_, r)| r.endpoints.iter().map(|e| e.address.as_str()))
            .collect()
    }
}

/// A malformed glob pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BadPattern;

/// Go's `filepath.Match` (Unix): `*` runs of non-`/` bytes, `?` one non-`/` character,
/// `[...]` classes with ranges and `^`, `\` escapes; the whole name must match, and a
/// malformed pattern is an error whatever the name.
fn glob_match(mut pattern: &[u8], mut name: &[u8]) -> Result<bool, BadPattern> {
    'chunks: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            return Ok(!name.contains(&b'/'));
        }
        if let Some(t) = match_chunk(chunk, name)?
            && (t.is_empty() || !pattern.is_empty())
        {
            name = t;
            continue;
        }
        if star {
            let mut i = 0;
            while i < name.len() && name[i] != b'/' {
                if let Some(t) = match_chunk(chunk, &name[i + 1..])? {
                    // The last chunk must use up the name; otherwise try further on.
                    if !pattern.is_empty() || t.is_empty() {
                        name = t;
                        continue 'chunks;
                    }
                }
                i += 1;
            }
        }
        // No match; the rest of the pattern must still be well formed.
        while !pattern.is_empty() {
            let (_, chunk, rest) = scan_chunk(pattern);
            pattern = rest;
            match_chunk(chunk, b"")?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Splits off leading stars and the chunk up to the next star outside a class.
fn scan_chunk(mut pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let mut star = false;
    while let [b'*', rest @ ..] = pattern {
        pattern = rest;
        star = true;
    }
    let mut in_class = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' if i + 1 < pattern.len() => i += 1,
            b'[' => in_class = true,
            b']' => in_class = false,
            b'*' if !in_class => break,
            _ => {}
        }
        i += 1;
    }
    (star, &pattern[..i], &pattern[i..])
}

/// Matches `chunk` (no stars) at the start of `s`: the rest of `s`, or `None`. The whole chunk
/// is checked for syntax even after a mismatch.
fn match_chunk<'a>(mut chunk: &[u8], mut s: &'a [u8]) -> Result<Option<&'a [u8]>, BadPattern> {
    let mut failed = false;
    while let Some(&c) = chunk.first() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match c {
            b'[' => {
                let mut r = 0u32;
                if !failed {
                    let (ch, n) = decode_rune(s);
                    r = ch;
                    s = &s[n..];
                }
                chunk = &chunk[1..];
                let negated = chunk.first() == Some(&b'^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut ranges = 0;
                loop {
                    if chunk.first() == Some(&b']') && ranges > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = class_char(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if chunk[0] == b'-' {
                        let (h, rest) = class_char(&chunk[1..])?;
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    ranges += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            b'?' => {
                if !failed {
                    if s[0] == b'/' {
                        failed = true;
                    }
                    let (_, n) = decode_rune(s);
                    s = &s[n..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                if c == b'\\' {
                    chunk = &chunk[1..];
                    if chunk.is_empty() {
                        return Err(BadPattern);
                    }
                }
                if !failed {
                    if chunk[0] != s[0] {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    Ok(if failed { None } else { Some(s) })
}

/// One character of a class (`\` escapes it): its code point and the rest, which must not be
/// empty (the class has to close).
fn class_char(chunk: &[u8]) -> Result<(u32, &[u8]), BadPattern> {
    let mut chunk = match chunk.first() {
        None | Some(b'-') | Some(b']') => return Err(BadPattern),
        Some(_) => chunk,
    };
    if chunk[0] == b'\\' {
        chunk = &chunk[1..];
        if chunk.is_empty() {
            return Err(BadPattern);
        }
    }
    let (r, n) = decode_rune(chunk);
    if r == char::REPLACEMENT_CHARACTER as u32 && n == 1 {
        return Err(BadPattern);
    }
    let rest = &chunk[n..];
    if rest.is_empty() {
        return Err(BadPattern);
    }
    Ok((r, rest))
}

/// The first UTF-8 character of `s` and its length, as Go's `utf8.DecodeRune` reads it: an
/// invalid byte is U+FFFD of length 1.
fn decode_rune(s: &[u8]) -> (u32, usize) {
    let Some(&b) = s.first() else {
        return (char::REPLACEMENT_CHARACTER as u32, 0);
    };
    if b < 0x80 {
        return (b as u32, 1);
    }
    let width = match b {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 0,
    };
    if width > 0
        && s.len() >= width
        && let Ok(text) = std::str::from_utf8(&s[..width])
        && let Some(c) = text.chars().next()
    {
        return (c as u32, width);
    }
    (char::REPLACEMENT_CHARACTER as u32, 1)
}

#[cfg(test)]
mod tests;
