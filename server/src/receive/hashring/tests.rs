//! Placement pinned to thanos-io/thanos `pkg/receive/hashring.go` (and the hash to
//! `pkg/store/labelpb`): each case names the upstream behaviour it holds Gauntlet to. The
//! ketama owners are the ones upstream's own `TestKetamaHashringGet` expects.

use super::*;

fn endpoints(addrs: &[&str]) -> Vec<Endpoint> {
    addrs
        .iter()
        .map(|a| Endpoint {
            address: a.to_string(),
            az: String::new(),
        })
        .collect()
}

fn zoned(pairs: &[(&str, &str)]) -> Vec<Endpoint> {
    pairs
        .iter()
        .map(|(a, z)| Endpoint {
            address: a.to_string(),
            az: z.to_string(),
        })
        .collect()
}

/// A ketama ring with `per_node` sections per endpoint (upstream's tests use 10).
fn ketama(eps: Vec<Endpoint>, per_node: usize, rf: u64) -> Result<Ring, HashringError> {
    let mut ring = Ring {
        name: String::new(),
        algorithm: Algorithm::Ketama,
        endpoints: eps,
        section_hashes: Vec::new(),
        section_replicas: Vec::new(),
        replication_factor: rf as usize,
    };
    ring.build_sections(per_node)?;
    Ok(ring)
}

fn hashmod(eps: Vec<Endpoint>) -> Result<Ring, HashringError> {
    let cfg = HashringConfig {
        endpoints: eps,
        ..HashringConfig::default()
    };
    Ring::new(&cfg, Algorithm::Hashmod, 1)
}

#[test]
fn the_series_hash_is_xxhash64_of_the_tenant_and_the_labels_each_followed_by_0xff() {
    // labelpb.HashWithPrefix: prefix, sep, then name, sep, value, sep per label, unsorted.
    assert_eq!(xxh64(b"", 0), 0xEF46_DB37_51D8_E999, "xxhash64 with seed 0");
    assert_eq!(
        series_hash("tenant", &[("pod", "nginx")]),
        xxh64(b"tenant\xffpod\xffnginx\xff", 0)
    );
    assert_eq!(
        series_hash("t", &[("a", "1"), ("b", "2")]),
        xxh64(b"t\xffa\xff1\xffb\xff2\xff", 0)
    );
    // The labels are hashed in the order given, not sorted.
    assert_ne!(
        series_hash("t", &[("a", "1"), ("b", "2")]),
        series_hash("t", &[("b", "2"), ("a", "1")])
    );
    assert_eq!(series_hash("", &[]), xxh64(b"\xff", 0));
}

#[test]
fn ketama_owners_are_the_ones_upstream_tests_expect() {
    // TestKetamaHashringGet: 10 sections per node, tenant "tenant", replication factor n+1.
    let nginx = series_hash("tenant", &[("pod", "nginx")]);
    let thanos = series_hash("tenant", &[("pod", "thanos")]);
    let cases: [(&[&str], u64, u64, &str); 7] = [
        (&["node-1", "node-2", "node-3"], nginx, 0, "node-2"),
        (&["node-1", "node-2", "node-3"], nginx, 1, "node-1"),
        (&["node-1", "node-2", "node-3"], nginx, 2, "node-3"),
        // Reordering the endpoints does not move a series: sections hash addresses.
        (&["node-1", "node-3", "node-2"], nginx, 2, "node-3"),
        // Adding a node elsewhere on the ring leaves the series where it was.
        (
            &["node-0", "node-1", "node-2", "node-3"],
            nginx,
            0,
            "node-2",
        ),
        (
            &["node-1", "node-2", "node-3", "node-4"],
            nginx,
            0,
            "node-2",
        ),
        (&["node-1", "node-2", "node-3"], thanos, 0, "node-3"),
    ];
    for (eps, hash, n, want) in cases {
        let ring = ketama(endpoints(eps), 10, n + 1).unwrap();
        assert_eq!(ring.get_n(hash, n).unwrap().address, want, "{eps:?} n={n}");
    }
}

#[test]
fn ketama_sections_hash_address_colon_index_from_one() {
    // newKetamaHashring: section i of an endpoint hashes "<address>:<i>" for i in 1..=per node;
    // a series goes to the first section at or after its hash, wrapping to the first.
    let ring = ketama(endpoints(&["a:1", "b:2"]), 3, 1).unwrap();
    let mut want: Vec<(u64, &str)> = Vec::new();
    for a in ["a:1", "b:2"] {
        for i in 1..=3 {
            want.push((xxh64(format!("{a}:{i}").as_bytes(), 0), a));
        }
    }
    want.sort();
    assert_eq!(
        ring.section_hashes,
        want.iter().map(|w| w.0).collect::<Vec<_>>()
    );
    for (h, owner) in &want {
        assert_eq!(ring.get_n(*h, 0).unwrap().address, *owner, "exactly on");
        assert_eq!(ring.get_n(h - 1, 0).unwrap().address, *owner, "just before");
    }
    let last = want.last().unwrap().0;
    if last < u64::MAX {
        assert_eq!(ring.get_n(last + 1, 0).unwrap().address, want[0].1, "wraps");
    }
}

#[test]
fn ketama_replicas_are_distinct_endpoints_walking_clockwise() {
    // calculateSectionReplicas without zones: the next sections' endpoints, skipping ones
    // already chosen.
    let ring = ketama(endpoints(&["x", "y", "z", "w"]), 50, 3).unwrap();
    for (s, &h) in ring.section_hashes.iter().enumerate() {
        let got: Vec<&str> = (0..3)
            .map(|n| ring.get_n(h, n).unwrap().address.as_str())
            .collect();
        let mut want: Vec<&str> = Vec::new();
        let mut j = s;
        while want.len() < 3 {
            let owner = ring
                .get_n(ring.section_hashes[j], 0)
                .unwrap()
                .address
                .as_str();
            if !want.contains(&owner) {
                want.push(owner);
            }
            j = (j + 1) % ring.section_hashes.len();
        }
        assert_eq!(got, want, "section {s}");
    }
}

#[test]
fn ketama_spreads_replicas_evenly_over_zones() {
    // TestKetamaHashringEvenAZSpread: the replicas of a series cover min(rf, zones) zones, no
    // zone holding more than one replica above another.
    let cases: [(&[(&str, &str)], u64); 6] = [
        (&[("a", "1"), ("b", "2"), ("c", "1"), ("d", "2")], 1),
        (&[("a", ""), ("b", ""), ("c", ""), ("d", "")], 1),
        (&[("a", "1"), ("b", "2"), ("c", "1"), ("d", "2")], 2),
        (
            &[
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("d", "1"),
                ("e", "2"),
                ("f", "3"),
            ],
            3,
        ),
        (
            &[
                ("a", ""),
                ("b", ""),
                ("c", ""),
                ("d", ""),
                ("e", ""),
                ("f", ""),
                ("g", ""),
            ],
            3,
        ),
        (
            &[
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("d", "1"),
                ("e", "2"),
                ("f", "3"),
                ("g", "4"),
                ("h", "4"),
                ("i", "4"),
                ("j", "5"),
                ("k", "5"),
                ("l", "5"),
            ],
            10,
        ),
    ];
    let h = series_hash("default-tenant", &[("foo", "bar")]);
    for (nodes, rf) in cases {
        let ring = ketama(zoned(nodes), SECTIONS_PER_NODE, rf).unwrap();
        let zones: HashSet<&str> = nodes.iter().map(|n| n.1).collect();
        let mut spread: BTreeMap<&str, i64> = BTreeMap::new();
        let mut seen = HashSet::new();
        for n in 0..rf {
            let e = ring.get_n(h, n).unwrap();
            assert!(seen.insert(e.address.clone()), "{nodes:?}: {e:?} twice");
            *spread.entry(e.az.as_str()).or_default() += 1;
        }
        assert_eq!(spread.len(), (rf as usize).min(zones.len()), "{nodes:?}");
        let least = *spread.values().min().unwrap();
        assert!(spread.values().all(|&c| c - least <= 1), "{spread:?}");
    }
}

#[test]
fn growing_a_ketama_ring_moves_series_only_to_new_endpoints() {
    // TestKetamaHashringIncreaseAtEnd / IncreaseInMiddle / ReplicationConsistency.
    let series: Vec<u64> = (0..2000)
        .map(|i| series_hash("tenant", &[("pod", &format!("nginx-{i}"))]))
        .collect();
    let cases: [(&[&str], &[&str], u64); 3] = [
        (
            &["node-1", "node-2", "node-3"],
            &["node-1", "node-2", "node-3", "node-4", "node-5"],
            1,
        ),
        (&["node-1", "node-3"], &["node-1", "node-2", "node-3"], 1),
        (
            &["node-1", "node-4", "node-5"],
            &["node-4", "node-3", "node-1", "node-2", "node-5"],
            2,
        ),
    ];
    for (before, after, rf) in cases {
        let a = ketama(endpoints(before), SECTIONS_PER_NODE, rf).unwrap();
        let b = ketama(endpoints(after), SECTIONS_PER_NODE, rf).unwrap();
        for &h in &series {
            for n in 0..rf {
                let now = &b.get_n(h, n).unwrap().address;
                if before.contains(&now.as_str()) {
                    let owners: Vec<&str> = (0..rf)
                        .map(|m| a.get_n(h, m).unwrap().address.as_str())
                        .collect();
                    assert!(owners.contains(&now.as_str()), "{now} gained a series");
                }
            }
        }
    }
}

#[test]
fn ketama_refuses_fewer_endpoints_than_replicas_and_unbalanceable_zones() {
    // TestKetamaHashringBadConfigIsRejected.
    assert!(matches!(
        ketama(endpoints(&["node-1"]), 1, 2),
        Err(HashringError::TooFewEndpoints { .. })
    ));
    // Zones 3/1/1 with five replicas: upstream's loop never ends; Gauntlet says why.
    let nodes = zoned(&[("a", "1"), ("b", "1"), ("c", "1"), ("d", "2"), ("e", "3")]);
    assert!(matches!(
        ketama(nodes, 5, 5),
        Err(HashringError::Unbalanceable { .. })
    ));
}

#[test]
fn hashmod_takes_hash_plus_replica_modulo_over_endpoints_sorted_by_address() {
    // simpleHashring.GetN: endpoints sorted by address; s[(hash + n) % len] with uint64
    // wrap-around.
    let ring = hashmod(endpoints(&["c:1", "a:1", "b:1"])).unwrap();
    let sorted = ["a:1", "b:1", "c:1"];
    let h = series_hash("tenant", &[("pod", "nginx")]);
    for n in 0..3u64 {
        let want = sorted[((h.wrapping_add(n)) % 3) as usize];
        assert_eq!(ring.get_n(h, n).unwrap().address, want);
    }
    for (hash, n, want) in [(0, 0, "a:1"), (1, 0, "b:1"), (2, 1, "a:1"), (5, 2, "b:1")] {
        assert_eq!(ring.get_n(hash, n).unwrap().address, want, "{hash}+{n}");
    }
    // 2^64 - 1 + 1 wraps to 0, so replica 1 is endpoint 0 (without the wrap it would be 1).
    assert_eq!(ring.get_n(u64::MAX, 1).unwrap().address, "a:1");
    assert_eq!(
        ring.get_n(h, 3).unwrap_err().to_string(),
        "insufficient nodes; have 3, want 4"
    );
}

#[test]
fn hashmod_refuses_availability_zones() {
    // TestInvalidAZHashringCfg.
    let err = hashmod(zoned(&[("a", "1"), ("b", "2")])).unwrap_err();
    assert!(
        err.to_string()
            .contains("Hashmod algorithm does not support AZ aware hashring configuration"),
        "{err}"
    );
}

fn owners(rings: &Hashrings, tenant: &str) -> Result<Vec<String>, HashringError> {
    let ring = rings.ring_for(tenant)?;
    Ok(ring.endpoints().iter().map(|e| e.address.clone()).collect())
}

#[test]
fn tenants_go_to_the_first_ring_that_takes_them() {
    // TestHashringGet (multiHashring): listed tenants, default rings, glob patterns.
    let cfg = parse(
        r#"[
            {"hashring": "one", "tenants": ["tenant1"], "endpoints": ["node1"]},
            {"hashring": "two", "tenants": ["tenant2"], "endpoints": ["node2"]},
            {"hashring": "globs", "tenants": ["t1-*", "t2", "t3-*"], "tenant_matcher_type": "glob",
             "endpoints": ["node3"]},
            {"hashring": "default", "endpoints": ["node4", "node5", "node6"]},
            {"hashring": "shadowed", "tenants": ["late"], "endpoints": ["node7"]}
        ]"#,
    )
    .unwrap();
    let rings = Hashrings::new(&cfg, Algorithm::Hashmod, 1).unwrap();
    assert_eq!(owners(&rings, "tenant1").unwrap(), ["node1"]);
    assert_eq!(owners(&rings, "tenant2").unwrap(), ["node2"]);
    for t in ["t1-a", "t2", "t3-"] {
        assert_eq!(owners(&rings, t).unwrap(), ["node3"], "{t}");
    }
    for t in ["t2x", "t1", "other", "late"] {
        assert_eq!(
            owners(&rings, t).unwrap(),
            ["node4", "node5", "node6"],
            "{t}"
        );
    }
    assert_eq!(rings.sizes[3], ("default".to_string(), 3, 0));
    // Without a default ring, an unlisted tenant has no owner.
    let cfg = parse(r#"[{"tenants": ["tenant1"], "endpoints": ["node1"]}]"#).unwrap();
    let rings = Hashrings::new(&cfg, Algorithm::Hashmod, 1).unwrap();
    assert!(matches!(
        rings.ring_for("tenant4"),
        Err(HashringError::NoMatchingHashring { .. })
    ));
    // An unknown matcher type matches nothing; a broken glob is an error.
    let cfg = parse(
        r#"[{"tenants": ["a"], "tenant_matcher_type": "regex", "endpoints": ["n1"]},
            {"tenants": ["b["], "tenant_matcher_type": "glob", "endpoints": ["n2"]},
            {"endpoints": ["n3"]}]"#,
    )
    .unwrap();
    let rings = Hashrings::new(&cfg, Algorithm::Hashmod, 1).unwrap();
    assert!(matches!(
        rings.ring_for("a"),
        Err(HashringError::BadPattern { .. })
    ));
}

#[test]
fn glob_patterns_follow_go_filepath_match() {
    // Go's path/filepath.Match on Unix.
    let cases: &[(&str, &str, Result<bool, BadPattern>)] = &[
        ("abc", "abc", Ok(true)),
        ("*", "abc", Ok(true)),
        ("*c", "abc", Ok(true)),
        ("a*", "a", Ok(true)),
        ("a*", "abc", Ok(true)),
        ("a*", "ab/c", Ok(false)),
        ("a*/b", "abc/b", Ok(true)),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", Ok(true)),
        ("a*b?c*x", "abxbbxdbxebxczzx", Ok(true)),
        ("a*b?c*x", "abxbbxdbxebxczzy", Ok(false)),
        ("ab[c]", "abc", Ok(true)),
        ("ab[b-d]", "abc", Ok(true)),
        ("ab[e-g]", "abc", Ok(false)),
        ("ab[^c]", "abc", Ok(false)),
        ("ab[^b-d]", "abc", Ok(false)),
        ("ab[^e-g]", "abc", Ok(true)),
        ("a\\*b", "a*b", Ok(true)),
        ("a\\*b", "ab", Ok(false)),
        ("a?b", "a☺b", Ok(true)),
        ("a[^a]b", "a☺b", Ok(true)),
        ("a???b", "a☺b", Ok(false)),
        ("a[^a][^a][^a]b", "a☺b", Ok(false)),
        ("[a-ζ]*", "α", Ok(true)),
        ("*[a-ζ]", "A", Ok(false)),
        ("a?b", "a/b", Ok(false)),
        ("a*b", "a/b", Ok(false)),
        ("[\\]a]", "]", Ok(true)),
        ("[\\-]", "-", Ok(true)),
        ("[x\\-]", "x", Ok(true)),
        ("[x\\-]", "-", Ok(true)),
        ("[x\\-]", "z", Ok(false)),
        ("[\\-x]", "x", Ok(true)),
        ("[\\-x]", "-", Ok(true)),
        ("[\\-x]", "a", Ok(false)),
        ("*x", "xxx", Ok(true)),
        ("[]a]", "]", Err(BadPattern)),
        ("[-]", "-", Err(BadPattern)),
        ("[x-]", "x", Err(BadPattern)),
        ("[x-]", "-", Err(BadPattern)),
        ("[x-]", "z", Err(BadPattern)),
        ("[-x]", "x", Err(BadPattern)),
        ("[-x]", "-", Err(BadPattern)),
        ("[-x]", "a", Err(BadPattern)),
        ("\\", "a", Err(BadPattern)),
        ("[a-b-c]", "a", Err(BadPattern)),
        ("[", "a", Err(BadPattern)),
        ("[^", "a", Err(BadPattern)),
        ("[^bc", "a", Err(BadPattern)),
        ("a[", "a", Err(BadPattern)),
        ("a[", "ab", Err(BadPattern)),
        ("a[", "x", Err(BadPattern)),
        ("a/b[", "x", Err(BadPattern)),
        ("*x[", "yy", Err(BadPattern)),
    ];
    for (pattern, name, want) in cases {
        assert_eq!(
            glob_match(pattern.as_bytes(), name.as_bytes()),
            *want,
            "{pattern:?} {name:?}"
        );
    }
}

#[test]
fn the_configuration_reads_as_thanos_reads_it() {
    // config.go: endpoints as strings or objects, null fields as empty, empty list refused,
    // an object endpoint needs an address.
    let cfg = parse(
        r#"[{"hashring": "r", "tenants": null, "endpoints": ["a:1", {"address": "b:1", "az": "z1",
            "capnproto_address": "b:19391"}], "algorithm": "ketama",
            "external_labels": {"k": "v"}, "unknown": 1}]"#,
    )
    .unwrap();
    assert_eq!(cfg[0].name, "r");
    assert!(cfg[0].tenants.is_empty());
    assert_eq!(
        cfg[0].endpoints,
        vec![
            Endpoint {
                address: "a:1".into(),
                az: String::new()
            },
            Endpoint {
                address: "b:1".into(),
                az: "z1".into()
            }
        ]
    );
    assert!(matches!(parse("[]"), Err(HashringError::Empty)));
    assert!(matches!(parse("{"), Err(HashringError::Parse(_))));
    assert!(matches!(
        parse(r#"[{"endpoints": [{"az": "z1"}]}]"#),
        Err(HashringError::EmptyAddress { .. })
    ));
    let sharded = parse(r#"[{"endpoints": ["a"], "algorithm": "ketama", "shuffle_sharding_config": {"shard_size": 1}}]"#).unwrap();
    assert!(matches!(
        Hashrings::new(&sharded, Algorithm::Hashmod, 1),
        Err(HashringError::ShuffleSharding { .. })
    ));
    // A ring's own algorithm wins over the flag; an unknown one is hashmod.
    let cfg = parse(r#"[{"endpoints": ["b", "a"], "algorithm": "maglev"}]"#).unwrap();
    let rings = Hashrings::new(&cfg, Algorithm::Ketama, 1).unwrap();
    let ring = rings.ring_for("x").unwrap();
    assert_eq!(ring.algorithm, Algorithm::Hashmod);
    assert_eq!(ring.endpoints()[0].address, "a");
}
