//! The deployment files in `deploy/` hold together: every flag a container of the Kubernetes
//! manifests (and the image's default command) passes is one `gauntlet <role> --help` lists;
//! the receive hashring's ConfigMap names exactly the StatefulSet's pods at the replication
//! factor its flags ask for; the store shards' relabel rules give every block to exactly one
//! shard; the querier reads every shard and every receiver; and every Secret and ConfigMap a
//! pod mounts is defined.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::*;
use serde_yaml::Value;

/// Every document of every manifest, with the file it came from.
fn manifests() -> Vec<(String, Value)> {
    let dir = repo_root().join("deploy/kubernetes");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = <Value as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            if !v.is_null() {
                out.push((f.file_name().unwrap().to_string_lossy().into_owned(), v));
            }
        }
    }
    out
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// The long flags `gauntlet <role> --help` lists.
fn flags_of(role: &str, cache: &mut BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    cache
        .entry(role.to_string())
        .or_insert_with(|| {
            let out = gauntlet().args([role, "--help"]).output().unwrap();
            assert!(out.status.success(), "gauntlet {role} --help failed");
            String::from_utf8(out.stdout)
                .unwrap()
                .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
                .filter(|w| w.starts_with("--"))
                .map(|w| w.split(['=', '<']).next().unwrap().to_string())
                .collect()
        })
        .clone()
}

/// A container's flags: each given flag with its values in order.
type Flags = BTreeMap<String, Vec<String>>;

/// The role and flags of a container's args, checked against the role's `--help`.
fn check_args(
    what: &str,
    args: &[String],
    cache: &mut BTreeMap<String, BTreeSet<String>>,
) -> Flags {
    let role = args.first().unwrap_or_else(|| panic!("{what}: no role"));
    let known = flags_of(role, cache);
    assert!(!known.is_empty(), "{role} --help lists no flags");
    let mut given = Flags::new();
    for a in &args[1..] {
        assert!(a.starts_with("--"), "{what}: {a:?} is not a flag");
        let (name, value) = a.split_once('=').unwrap_or((a.as_str(), ""));
        assert!(
            known.contains(name),
            "{what}: `gauntlet {role}` has no flag {name}"
        );
        given
            .entry(name.to_string())
            .or_default()
            .push(value.to_string());
    }
    given
}

/// The containers running the gauntlet image in a workload, with their args.
fn gauntlet_containers(doc: &Value) -> Vec<(String, Vec<String>)> {
    let containers = &doc["spec"]["template"]["spec"]["containers"];
    containers
        .as_sequence()
        .into_iter()
        .flatten()
        .filter(|c| s(&c["image"]).starts_with("gauntlet"))
        .map(|c| {
            let args = c["args"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|a| s(a).trim_end().to_string())
                .collect();
            (s(&c["name"]).to_string(), args)
        })
        .collect()
}

#[test]
fn manifests_and_image_use_only_flags_gauntlet_has_and_fit_together() {
    let docs = manifests();
    let mut help = BTreeMap::new();
    let mut roles: BTreeMap<String, Vec<(String, Flags)>> = BTreeMap::new();
    let mut defined: BTreeSet<(String, String)> = BTreeSet::new();
    let mut mounted: BTreeSet<(String, String)> = BTreeSet::new();
    let mut workloads: BTreeMap<String, Value> = BTreeMap::new();
    let mut services: BTreeMap<String, Value> = BTreeMap::new();
    for (file, doc) in &docs {
        let kind = s(&doc["kind"]).to_string();
        let name = s(&doc["metadata"]["name"]).to_string();
        assert_eq!(
            s(&doc["metadata"]["namespace"]),
            if matches!(
                kind.as_str(),
                "Namespace" | "ClusterRole" | "ClusterRoleBinding"
            ) {
                ""
            } else {
                "monitoring"
            },
            "{file}: {kind} {name}"
        );
        match kind.as_str() {
            "Secret" | "ConfigMap" => {
                defined.insert((kind.clone(), name.clone()));
            }
            "Service" => {
                services.insert(name.clone(), doc.clone());
            }
            "StatefulSet" | "Deployment" => {
                workloads.insert(name.clone(), doc.clone());
                for v in doc["spec"]["template"]["spec"]["volumes"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                {
                    if let Some(n) = v["secret"]["secretName"].as_str() {
                        mounted.insert(("Secret".into(), n.into()));
                    }
                    if let Some(n) = v["configMap"]["name"].as_str() {
                        mounted.insert(("ConfigMap".into(), n.into()));
                    }
                }
                let found = gauntlet_containers(doc);
                assert!(
                    !found.is_empty() || runs_only_caches(doc),
                    "{file}: {name} runs no gauntlet container"
                );
                for (container, args) in found {
                    let what = format!("{file}: {name}/{container}");
                    let given = check_args(&what, &args, &mut help);
                    roles
                        .entry(args[0].clone())
                        .or_default()
                        .push((name.clone(), given));
                }
            }
            _ => {}
        }
    }
    let missing: Vec<_> = mounted.difference(&defined).collect();
    assert!(missing.is_empty(), "mounted and not defined: {missing:?}");
    for role in [
        "store",
        "receive",
        "compact",
        "query",
        "rule",
        "sidecar",
        "query-frontend",
    ] {
        assert!(roles.contains_key(role), "no {role} in the manifests");
    }

    // The compactor is a singleton.
    let compact = &roles["compact"];
    assert_eq!(compact.len(), 1);
    assert_eq!(
        workloads[&compact[0].0]["spec"]["replicas"].as_u64(),
        Some(1)
    );

    // The hashring names exactly the receive StatefulSet's pods, at their gRPC port.
    let receive = &roles["receive"];
    assert_eq!(receive.len(), 1);
    let (sts_name, flags) = &receive[0];
    let sts = &workloads[sts_name];
    let replicas = sts["spec"]["replicas"].as_u64().unwrap();
    let service = s(&sts["spec"]["serviceName"]);
    assert_eq!(
        services[service]["spec"]["clusterIP"].as_str(),
        Some("None")
    );
    let factor: u64 = flags["--receive.replication-factor"][0].parse().unwrap();
    assert!(factor <= replicas);
    let (_, rings) = docs
        .iter()
        .find(|(_, d)| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "gauntlet-hashrings")
        .expect("the hashrings ConfigMap");
    let rings: serde_json::Value =
        serde_json::from_str(s(&rings["data"]["hashrings.json"])).expect("hashrings JSON");
    let endpoints: BTreeSet<String> = rings[0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    let pods: BTreeSet<String> = (0..replicas)
        .map(|i| format!("{sts_name}-{i}.{service}.monitoring.svc.cluster.local:10901"))
        .collect();
    assert_eq!(endpoints, pods);
    assert_eq!(
        flags["--receive.local-endpoint"],
        vec![format!(
            "$(POD_NAME).{service}.monitoring.svc.cluster.local:10901"
        )]
    );
    let ring_file = &flags["--receive.hashrings-file"][0];
    assert!(ring_file.ends_with("/hashrings.json"), "{ring_file}");

    // Store shards: hashmod over the block ID, each keeping its own remainder.
    let stores = &roles["store"];
    let n = stores.len();
    assert!(n >= 2, "{n} store shards");
    let mut kept = BTreeSet::new();
    for (name, flags) in stores {
        let rules: Value = serde_yaml::from_str(&flags["--selector.relabel-config"][0])
            .unwrap_or_else(|e| panic!("{name}: relabel config: {e}"));
        let rules = rules.as_sequence().unwrap();
        assert_eq!(s(&rules[0]["action"]), "hashmod", "{name}");
        assert_eq!(rules[0]["source_labels"][0].as_str(), Some("__block_id"));
        assert_eq!(rules[0]["modulus"].as_u64(), Some(n as u64), "{name}");
        assert_eq!(s(&rules[1]["action"]), "keep", "{name}");
        kept.insert(s(&rules[1]["regex"]).to_string());
    }
    let want: BTreeSet<String> = (0..n).map(|i| i.to_string()).collect();
    assert_eq!(kept, want, "every remainder kept by exactly one shard");
    // The rules as the stores run them: 3,000 block IDs, each kept by exactly one shard, and
    // the shards within a fifth of an even share.
    let shard_rules: Vec<Vec<gauntlet_engine::relabel::Rule>> = stores
        .iter()
        .map(|(name, flags)| {
            gauntlet_engine::relabel::parse_rules(&flags["--selector.relabel-config"][0])
                .unwrap_or_else(|e| panic!("{name}: {e}"))
        })
        .collect();
    let mut per_shard = vec![0usize; n];
    let blocks = 3000;
    for i in 0..blocks {
        let id = ulid::Ulid::from_parts(
            1_735_689_600_000 + i * 7_200_000,
            u128::from(i) * 0x9e37_79b9_7f4a_7c15,
        );
        let labels = gauntlet_engine::labels::Labels::from_pairs([
            ("__block_id", id.to_string()),
            ("cluster", "eu1".to_string()),
        ]);
        let keepers: Vec<usize> = (0..n)
            .filter(|&k| gauntlet_engine::relabel::process(&labels, &shard_rules[k]).is_some())
            .collect();
        assert_eq!(keepers.len(), 1, "block {id} kept by shards {keepers:?}");
        per_shard[keepers[0]] += 1;
    }
    let even = blocks as usize / n;
    for (k, count) in per_shard.iter().enumerate() {
        assert!(
            count.abs_diff(even) * 5 <= even,
            "shard {k} keeps {count} of {blocks} blocks: {per_shard:?}"
        );
    }

    // The querier reads every store shard's Service and every receiver, deduplicating the
    // receivers' replica label.
    let query = &roles["query"];
    assert_eq!(query.len(), 1);
    let endpoints: BTreeSet<String> = query[0].1["--endpoint"].iter().cloned().collect();
    for (name, _) in stores {
        let svc = format!("{name}.monitoring.svc.cluster.local:10901");
        assert!(services.contains_key(name), "no Service {name}");
        assert!(endpoints.contains(&svc), "the querier does not read {svc}");
    }
    // The receivers through the headless Service's SRV records of its `grpc` port.
    let srv = "dnssrvnoa+_grpc._tcp.gauntlet-receive.monitoring.svc.cluster.local";
    assert!(endpoints.contains(srv), "the querier does not read {srv}");
    let receive_svc = &services["gauntlet-receive"]["spec"];
    assert_eq!(receive_svc["clusterIP"].as_str(), Some("None"));
    assert!(
        receive_svc["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|p| p["name"].as_str() == Some("grpc") && p["port"].as_u64() == Some(10901)),
        "the receivers' Service has no grpc port"
    );
    // The rulers, through their headless Service, their pair deduplicated by their label, and
    // that label dropped from the alerts they send.
    let srv = "dnssrvnoa+_grpc._tcp.gauntlet-rule.monitoring.svc.cluster.local";
    assert!(endpoints.contains(srv), "the querier does not read {srv}");
    let rule = &roles["rule"];
    assert_eq!(rule.len(), 1);
    let rule_label = rule[0].1["--label"][0]
        .split('=')
        .next()
        .unwrap()
        .to_string();
    assert!(
        query[0].1["--query.replica-label"].contains(&rule_label),
        "the querier does not deduplicate the rulers' {rule_label}"
    );
    assert_eq!(
        rule[0].1["--alert.label-drop"],
        std::slice::from_ref(&rule_label)
    );
    let rule_query = &rule[0].1["--query"][0];
    assert!(
        rule_query.starts_with("gauntlet-query.monitoring.svc.cluster.local:"),
        "the ruler queries {rule_query}"
    );
    let replica_label = &query[0].1["--query.replica-label"][0];
    assert!(
        receive[0].1["--label"][0].starts_with(&format!("{replica_label}=")),
        "the querier deduplicates {replica_label}, the receivers label {:?}",
        receive[0].1["--label"]
    );

    check_sidecars(&roles["sidecar"], &workloads, &services, &query[0].1);
    check_frontend(&roles["query-frontend"], &docs, &services);

    // The image runs the binary, and its default command is a valid `all`.
    let dockerfile = std::fs::read_to_string(repo_root().join("deploy/Dockerfile")).unwrap();
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/bin/gauntlet\"]"));
    let cmd = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("a CMD");
    let cmd: Vec<String> = serde_json::from_str(cmd).unwrap();
    check_args("Dockerfile CMD", &cmd, &mut help);
}

/// Workloads without Gauntlet in them: only the frontends' memcached.
fn runs_only_caches(doc: &Value) -> bool {
    doc["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .into_iter()
        .flatten()
        .all(|c| s(&c["image"]).starts_with("memcached:"))
}

/// A container of a workload by name.
fn container<'a>(workload: &'a Value, name: &str) -> &'a Value {
    workload["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// The value of `--name=value` among a container's args.
fn arg<'a>(c: &'a Value, name: &str) -> Option<&'a str> {
    c["args"]
        .as_sequence()?
        .iter()
        .find_map(|a| s(a).strip_prefix(name)?.strip_prefix('='))
}

/// Where a container mounts the volume `volume`.
fn mount<'a>(c: &'a Value, volume: &str) -> Option<&'a str> {
    c["volumeMounts"]
        .as_sequence()?
        .iter()
        .find(|m| m["name"].as_str() == Some(volume))
        .and_then(|m| m["mountPath"].as_str())
}

/// Each sidecar sits beside a Prometheus in its pod: it reads that Prometheus's port and TSDB
/// (the same volume), Prometheus cuts blocks of one size as uploads need, labels each replica
/// with the label the querier deduplicates, and the querier reads every sidecar.
fn check_sidecars(
    sidecars: &[(String, Flags)],
    workloads: &BTreeMap<String, Value>,
    services: &BTreeMap<String, Value>,
    query: &Flags,
) {
    for (name, flags) in sidecars {
        let pod = &workloads[name];
        let prometheus = container(pod, "prometheus");
        let port = prometheus["ports"][0]["containerPort"].as_u64().unwrap();
        assert_eq!(
            flags["--prometheus.url"],
            vec![format!("http://localhost:{port}")],
            "{name}"
        );
        let tsdb = arg(prometheus, "--storage.tsdb.path").expect("Prometheus's TSDB path");
        assert_eq!(flags["--tsdb.path"], vec![tsdb.to_string()], "{name}");
        let sidecar = container(pod, "sidecar");
        let (volume, _) = prometheus["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|m| (s(&m["name"]), s(&m["mountPath"])))
            .find(|(_, path)| *path == tsdb)
            .expect("Prometheus's TSDB on a volume");
        assert_eq!(mount(sidecar, volume), Some(tsdb), "{name}: TSDB volume");
        assert!(flags.contains_key("--objstore.config-file"), "{name}");
        // The reloader watches the configuration Prometheus reads, mounted in its own container.
        let config = arg(prometheus, "--config.file").expect("Prometheus's --config.file");
        assert_eq!(
            flags["--reloader.config-file"],
            vec![config.to_string()],
            "{name}"
        );
        let dir = config.rsplit_once('/').map_or("", |(d, _)| d);
        assert_eq!(mount(sidecar, "config"), Some(dir), "{name}: config volume");
        assert_eq!(
            arg(prometheus, "--storage.tsdb.min-block-duration"),
            arg(prometheus, "--storage.tsdb.max-block-duration"),
            "{name}: uploads need min = max block duration"
        );
        assert!(arg(prometheus, "--storage.tsdb.min-block-duration").is_some());
        let service = s(&pod["spec"]["serviceName"]);
        assert_eq!(
            services[service]["spec"]["clusterIP"].as_str(),
            Some("None")
        );
        let srv = format!("dnssrvnoa+_grpc._tcp.{service}.monitoring.svc.cluster.local");
        assert!(
            query["--endpoint"].contains(&srv),
            "the querier does not read {srv}"
        );
    }
}

/// The frontends send to the queriers' Service, and their cache config names the memcached
/// Service the manifests define.
fn check_frontend(
    frontends: &[(String, Flags)],
    docs: &[(String, Value)],
    services: &BTreeMap<String, Value>,
) {
    assert!(services.contains_key("gauntlet-query"));
    for (name, flags) in frontends {
        let downstream = &flags["--query-frontend.downstream-url"][0];
        assert!(
            downstream.starts_with("http://gauntlet-query.monitoring.svc.cluster.local:"),
            "{name} sends to {downstream}"
        );
        let file = &flags["--query-range.response-cache-config-file"][0];
        let (dir, key) = file.rsplit_once('/').unwrap();
        let (_, map) = docs
            .iter()
            .find(|(_, d)| d["kind"] == "ConfigMap" && d["data"][key].is_string())
            .unwrap_or_else(|| panic!("{name}: no ConfigMap holds {key}"));
        let config: Value = serde_yaml::from_str(s(&map["data"][key])).unwrap();
        assert_eq!(s(&config["type"]), "MEMCACHED", "{name} in {dir}");
        let address = s(&config["config"]["addresses"][0]);
        let host = address
            .split_once("._tcp.")
            .map(|(_, h)| h)
            .unwrap_or(address);
        let service = host.split('.').next().unwrap();
        assert!(
            services.contains_key(service),
            "{name}: no Service {service} for the cache at {address}"
        );
    }
}
