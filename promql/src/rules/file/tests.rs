use super::{ParseOptions, parse};

fn errors(text: &str) -> Vec<String> {
    parse(text, ParseOptions::default()).unwrap_err()
}

#[test]
fn reads_every_field() {
    let text = r#"
groups:
  - name: g
    interval: 30s
    query_offset: 1m
    limit: 10
    partial_response_strategy: warn
    labels: {team: a}
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
        labels: {x: "1"}
      - alert: Down
        expr: up == 0
        for: 5m
        keep_firing_for: 1m
        labels: {severity: page}
        annotations: {summary: "{{ $labels.instance }} down"}
"#;
    let g = parse(text, ParseOptions::default()).unwrap();
    assert_eq!(g.len(), 1);
    let g = &g[0];
    assert_eq!(
        (g.interval_ms, g.query_offset_ms, g.limit),
        (Some(30_000), Some(60_000), 10)
    );
    assert_eq!(g.partial_response_strategy.as_deref(), Some("warn"));
    assert_eq!(g.rules[0].name(), "job:up:sum");
    assert_eq!(g.rules[1].name(), "Down");
    assert_eq!(
        (g.rules[1].for_ms, g.rules[1].keep_firing_for_ms),
        (300_000, 60_000)
    );
    assert_eq!(
        g.rules[1].annotations["summary"],
        "{{ $labels.instance }} down"
    );
    assert!(parse("", ParseOptions::default()).unwrap().is_empty());
    assert!(
        parse("groups:\n", ParseOptions::default())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn refuses_bad_fields_and_types_in_go_yaml_words() {
    assert_eq!(
        errors("groups:\n  - name: a\n    limit: many\n    rules: []\n"),
        ["yaml: unmarshal errors:\n  line 3: cannot unmarshal !!str `many` into int"]
    );
    assert_eq!(
        errors("groups:\n  - name: a\n    interval: soon\n"),
        ["not a valid duration string: \"soon\""]
    );
    assert_eq!(
        errors("groups: 5\n"),
        ["yaml: unmarshal errors:\n  line 1: cannot unmarshal !!int `5` into []rulefmt.RuleGroup"]
    );
    assert_eq!(
        errors("groupz: []\n"),
        ["yaml: unmarshal errors:\n  line 1: field groupz not found in type rulefmt.RuleGroups"]
    );
    let ignored = ParseOptions {
        ignore_unknown_fields: true,
        ..ParseOptions::default()
    };
    assert!(parse("groupz: []\n", ignored).unwrap().is_empty());
    assert!(errors("groups: [")[0].starts_with("yaml: "));
}

#[test]
fn semantic_problems_are_all_reported() {
    let e = errors(
        "groups:\n  - name: a\n    rules:\n      - record: x\n        expr: sum(\n      - alert: A\n        expr: up\n        labels: {__name__: b}\n  - name: a\n    rules: []\n",
    );
    assert_eq!(
        e,
        [
            "5:15: group \"a\", rule 1, \"x\": could not parse expression: 1:5: parse error: unclosed left parenthesis",
            "group \"a\", rule 2, \"A\": invalid label name: __name__",
            "0:0: groupname: \"a\" is repeated in the same file",
        ]
    );
}

#[test]
fn templates_are_checked_when_asked() {
    let check = |_: &str, t: &str| {
        if t.contains("$label.") {
            Err("undefined variable \"$label\"".to_string())
        } else {
            Ok(())
        }
    };
    let opts = ParseOptions {
        check_template: Some(&check),
        ..ParseOptions::default()
    };
    let e = parse(
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    annotations: {s: '{{ $label.x }}'}\n",
        opts,
    )
    .unwrap_err();
    assert_eq!(
        e,
        ["group \"g\", rule 1, \"A\": annotation \"s\": undefined variable \"$label\""]
    );
}
