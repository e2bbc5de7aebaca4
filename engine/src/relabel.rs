//! Prometheus relabelling (`relabel_configs`): rules read from YAML with Prometheus's field
//! names, defaults and validation, applied to a label set in order. The store uses them to
//! choose which blocks a shard serves (`--selector.relabel-config`).
//!
//! Semantics follow Prometheus 2.42's `model/relabel`: the source values are joined with the
//! separator, the regex is anchored at both ends, a label set to the empty string is removed,
//! and `hashmod` takes the last 8 bytes of the MD5 digest as a big-endian integer.

use std::collections::BTreeMap;
use std::fmt;

use md5::{Digest, Md5};
use regex::Regex;
use serde::Deserialize;

use crate::labels::{Labels, MatchType, Matcher};

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Sets `target_label` to `replacement` (with `$n` from the regex) when the regex matches.
    Replace,
    /// Drops the set unless the regex matches the joined source values.
    Keep,
    /// Drops the set when the regex matches the joined source values.
    Drop,
    /// Drops the set unless `target_label`'s value equals the joined source values.
    KeepEqual,
    /// Drops the set when `target_label`'s value equals the joined source values.
    DropEqual,
    /// Sets `target_label` to the MD5 of the joined source values modulo `modulus`.
    HashMod,
    /// Copies every label whose name the regex matches to the name `replacement` gives.
    LabelMap,
    /// Removes every label whose name the regex matches.
    LabelDrop,
    /// Removes every label whose name the regex does not match.
    LabelKeep,
    /// Sets `target_label` to the joined source values in lower case.
    Lowercase,
    /// Sets `target_label` to the joined source values in upper case.
    Uppercase,
}

impl Action {
    fn parse(s: &str) -> Option<Action> {
        Some(match s.to_ascii_lowercase().as_str() {
            "replace" => Action::Replace,
            "keep" => Action::Keep,
            "drop" => Action::Drop,
            "keepequal" => Action::KeepEqual,
            "dropequal" => Action::DropEqual,
            "hashmod" => Action::HashMod,
            "labelmap" => Action::LabelMap,
            "labeldrop" => Action::LabelDrop,
            "labelkeep" => Action::LabelKeep,
            "lowercase" => Action::Lowercase,
            "uppercase" => Action::Uppercase,
            _ => return None,
        })
    }

    /// The name used in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why relabel rules could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelabelError {
    /// The YAML is malformed or a rule is invalid; `line` and `column` (1-based) point at it
    /// when known. The user must fix the configuration.
    #[error("{}{message}", location(*.line, *.column))]
    Config {
        /// Line of the offending node, 1-based.
        line: Option<usize>,
        /// Column of the offending node, 1-based.
        column: Option<usize>,
        /// What is wrong, in Prometheus's words where it has them.
        message: String,
    },
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("line {l} column {c}: "),
        (Some(l), None) => format!("line {l}: "),
        _ => String::new(),
    }
}

const DEFAULT_SEPARATOR: &str = ";";
const DEFAULT_REGEX: &str = "(.*)";
const DEFAULT_REPLACEMENT: &str = "$1";

/// One relabel rule, validated, with its regex compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    source_labels: Vec<String>,
    separator: String,
    /// The pattern as written (`None` when the default applies).
    regex_text: Option<String>,
    regex: Regex,
    modulus: u64,
    target_label: String,
    replacement: String,
    action: Action,
}

/// A rule as written: every field optional, Prometheus's names.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a relabel rule: a map of source_labels, separator, regex, modulus, target_label, replacement and action"
)]
struct RawRule {
    #[serde(default)]
    source_labels: Option<Vec<String>>,
    #[serde(default)]
    separator: Option<String>,
    #[serde(default)]
    regex: Option<String>,
    #[serde(default)]
    modulus: Option<u64>,
    #[serde(default)]
    target_label: Option<String>,
    #[serde(default)]
    replacement: Option<String>,
    #[serde(default)]
    action: Option<String>,
}

/// Whether `name` is a label name in Prometheus's classic syntax (`[a-zA-Z_][a-zA-Z0-9_]*`).
fn valid_label_name(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Whether `s` is a label name possibly built from `$name` / `${name}` references, the
/// shape Prometheus allows for a `replace` target and a `labelmap` replacement.
fn valid_template_name(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() {
        return false;
    }
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    let mut first = true;
    while i < b.len() {
        match b[i] {
            b'$' => {
                if b.get(i + 1) == Some(&b'{') {
                    let close = match b[i + 2..].iter().position(|&c| c == b'}') {
                        Some(p) => i + 2 + p,
                        None => return false,
                    };
                    if close == i + 2 || !b[i + 2..close].iter().all(|&c| word(c)) {
                        return false;
                    }
                    i = close + 1;
                } else {
                    let n = b[i + 1..].iter().take_while(|&&c| word(c)).count();
                    if n == 0 {
                        return false;
                    }
                    i += 1 + n;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' => i += 1,
            c if c.is_ascii_digit() && !first => i += 1,
            _ => return false,
        }
        first = false;
    }
    true
}

/// Compiles `pattern` anchored at both ends, refusing what Prometheus's regex syntax refuses.
fn compile(pattern: &str) -> Result<Regex, String> {
    if let Err(e) = Matcher::new(MatchType::Regexp, "regex", pattern) {
        return Err(format!("error parsing regexp: {}", e.reason));
    }
    Regex::new(&format!("^(?:{})$", crate::labels::go_to_rust(pattern)))
        .map_err(|e| format!("error parsing regexp: {e}"))
}

impl Rule {
    fn from_raw(r: RawRule) -> Result<Rule, String> {
        let action = match &r.action {
            None => Action::Replace,
            Some(a) => Action::parse(a).ok_or_else(|| format!("unknown relabel action {a:?}"))?,
        };
        let source_labels = r.source_labels.unwrap_or_default();
        if let Some(bad) = source_labels.iter().find(|n| !valid_label_name(n)) {
            return Err(format!("{bad:?} is not a valid label name"));
        }
        let separator = r.separator.unwrap_or_else(|| DEFAULT_SEPARATOR.into());
        let regex = compile(r.regex.as_deref().unwrap_or(DEFAULT_REGEX))?;
        let modulus = r.modulus.unwrap_or(0);
        let target_label = r.target_label.unwrap_or_default();
        let replacement = r.replacement.unwrap_or_else(|| DEFAULT_REPLACEMENT.into());
        let rule = Rule {
            source_labels,
            separator,
            regex_text: r.regex,
            regex,
            modulus,
            target_label,
            replacement,
            action,
        };
        rule.validate()?;
        Ok(rule)
    }

    /// Prometheus's checks, in its order and words.
    fn validate(&self) -> Result<(), String> {
        use Action::*;
        let a = self.action;
        let t = &self.target_label;
        if a == HashMod && self.modulus == 0 {
            return Err("relabel configuration for hashmod requires non-zero modulus".into());
        }
        if matches!(
            a,
            Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
        ) && t.is_empty()
        {
            return Err(format!(
                "relabel configuration for {a} action requires 'target_label' value"
            ));
        }
        let invalid_target = || format!("{t:?} is invalid 'target_label' for {a} action");
        if a == Replace && !t.contains('$') && !valid_label_name(t) {
            return Err(invalid_target());
        }
        if a == Replace && t.contains('$') && !valid_template_name(t) {
            return Err(invalid_target());
        }
        if matches!(a, Lowercase | Uppercase | KeepEqual | DropEqual) && !valid_label_name(t) {
            return Err(invalid_target());
        }
        if matches!(a, Lowercase | Uppercase | KeepEqual | DropEqual)
            && self.replacement != DEFAULT_REPLACEMENT
        {
            return Err(format!("'replacement' can not be set for {a} action"));
        }
        if a == LabelMap && !valid_template_name(&self.replacement) {
            return Err(format!(
                "{:?} is invalid 'replacement' for {a} action",
                self.replacement
            ));
        }
        if a == HashMod && !valid_label_name(t) {
            return Err(invalid_target());
        }
        if matches!(a, DropEqual | KeepEqual)
            && (self.regex_text.is_some()
                || self.modulus != 0
                || self.separator != DEFAULT_SEPARATOR
                || self.replacement != DEFAULT_REPLACEMENT)
        {
            return Err(format!(
                "{a} action requires only 'source_labels' and `target_label`, and no other fields"
            ));
        }
        if matches!(a, LabelDrop | LabelKeep)
            && (!self.source_labels.is_empty()
                || !t.is_empty()
                || self.modulus != 0
                || self.separator != DEFAULT_SEPARATOR
                || self.replacement != DEFAULT_REPLACEMENT)
        {
            return Err(format!(
                "{a} action requires only 'regex', and no other fields"
            ));
        }
        Ok(())
    }

    /// The rule's action.
    pub fn action(&self) -> Action {
        self.action
    }

    /// Applies the rule to `lb`; `false` when the set is dropped.
    fn apply(&self, lb: &mut BTreeMap<String, String>) -> bool {
        let get = |lb: &BTreeMap<String, String>, n: &str| lb.get(n).cloned().unwrap_or_default();
        let val = self
            .source_labels
            .iter()
            .map(|n| get(lb, n))
            .collect::<Vec<_>>()
            .join(&self.separator);
        match self.action {
            Action::Drop => return !self.regex.is_match(&val),
            Action::Keep => return self.regex.is_match(&val),
            Action::DropEqual => return get(lb, &self.target_label) != val,
            Action::KeepEqual => return get(lb, &self.target_label) == val,
            Action::Replace => {
                let Some(caps) = self.regex.captures(&val) else {
                    return true;
                };
                let mut target = String::new();
                caps.expand(&self.target_label, &mut target);
                if !valid_label_name(&target) {
                    return true;
                }
                let mut value = String::new();
                caps.expand(&self.replacement, &mut value);
                set(lb, target, value);
            }
            Action::Lowercase => set(lb, self.target_label.clone(), val.to_lowercase()),
            Action::Uppercase => set(lb, self.target_label.clone(), val.to_uppercase()),
            Action::HashMod => {
                let m = hashmod(&val, self.modulus);
                set(lb, self.target_label.clone(), m.to_string());
            }
            Action::LabelMap => {
                // Rules see the set as it was before this rule; new names are added after.
                let before: Vec<(String, String)> =
                    lb.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                for (name, value) in before {
                    if let Some(caps) = self.regex.captures(&name) {
                        let mut to = String::new();
                        caps.expand(&self.replacement, &mut to);
                        set(lb, to, value);
                    }
                }
            }
            Action::LabelDrop => lb.retain(|name, _| !self.regex.is_match(name)),
            Action::LabelKeep => lb.retain(|name, _| self.regex.is_match(name)),
        }
        true
    }
}

/// Sets a label; the empty value removes it, as Prometheus's label builder does.
fn set(lb: &mut BTreeMap<String, String>, name: String, value: String) {
    if value.is_empty() {
        lb.remove(&name);
    } else {
        lb.insert(name, value);
    }
}

/// Prometheus's `hashmod`: the MD5 digest of `value`, its last 8 bytes read as a big-endian
/// integer, modulo `modulus` (non-zero).
pub fn hashmod(value: &str, modulus: u64) -> u64 {
    let digest = Md5::digest(value.as_bytes());
    let mut low = [0u8; 8];
    low.copy_from_slice(&digest[8..16]);
    u64::from_be_bytes(low) % modulus
}

/// Reads a YAML list of relabel rules (the body of `relabel_configs`). An empty document is
/// no rules. Errors say which rule (1-based) and, where it can be found, its line.
pub fn parse_rules(yaml: &str) -> Result<Vec<Rule>, RelabelError> {
    if yaml.trim().is_empty() {
        return Ok(Vec::new());
    }
    let raw: Option<Vec<RawRule>> = serde_yaml::from_str(yaml).map_err(|e| {
        let loc = e.location();
        let message = e.to_string();
        // The reader appends " at line L column C"; the position is given in front instead.
        let message = match message.rfind(" at line ") {
            Some(i) if loc.is_some() => &message[..i],
            _ => &message[..],
        };
        RelabelError::Config {
            line: loc.as_ref().map(|l| l.line()),
            column: loc.as_ref().map(|l| l.column()),
            message: name_rule(message),
        }
    })?;
    let starts = item_lines(yaml);
    raw.unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            Rule::from_raw(r).map_err(|message| RelabelError::Config {
                line: starts.get(i).copied(),
                column: None,
                message: format!("relabel rule {}: {message}", i + 1),
            })
        })
        .collect()
}

/// The YAML reader names a rule by its path (`.[2].modulus: …`); this says `relabel rule 3
/// (modulus): …` instead.
fn name_rule(message: &str) -> String {
    let Some(rest) = message.strip_prefix(".[") else {
        return message.to_string();
    };
    let Some(close) = rest.find(']') else {
        return message.to_string();
    };
    let Ok(i) = rest[..close].parse::<usize>() else {
        return message.to_string();
    };
    let rest = &rest[close + 1..];
    match rest.split_once(": ") {
        Some(("", m)) => format!("relabel rule {}: {m}", i + 1),
        Some((field, m)) => format!(
            "relabel rule {} ({}): {m}",
            i + 1,
            field.trim_start_matches('.')
        ),
        None => message.to_string(),
    }
}

/// Lines (1-based) where the items of a block-style top-level list start: `- ` at the
/// indentation of the first one. Flow-style lists give none.
fn item_lines(yaml: &str) -> Vec<usize> {
    let mut indent = None;
    let mut out = Vec::new();
    for (n, line) in yaml.lines().enumerate() {
        let body = line.trim_start_matches(' ');
        let at = line.len() - body.len();
        let item = body == "-" || body.starts_with("- ");
        match indent {
            None if item => {
                indent = Some(at);
                out.push(n + 1);
            }
            Some(i) if item && at == i => out.push(n + 1),
            _ => {}
        }
    }
    out
}

/// Applies `rules` in order to `labels`: the relabelled set, or `None` when a rule dropped it.
pub fn process(labels: &Labels, rules: &[Rule]) -> Option<Labels> {
    // A label with an empty value is no label, in the input as in the output.
    let mut lb: BTreeMap<String, String> = labels
        .iter()
        .filter(|l| !l.value.is_empty())
        .map(|l| (l.name.to_string(), l.value.to_string()))
        .collect();
    for r in rules {
        if !r.apply(&mut lb) {
            return None;
        }
    }
    Some(Labels::from_pairs(lb))
}
