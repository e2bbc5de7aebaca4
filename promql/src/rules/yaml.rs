//! A YAML document as a tree whose nodes know their line and column, for rule files: their
//! errors cite where in the file a group or rule is, as Prometheus's do.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};

/// The deepest nesting of collections read; a rule file nests four levels.
const MAX_DEPTH: usize = 64;
/// The most nodes a document may expand to, aliases counted at every use: a few aliases of
/// aliases would otherwise grow exponentially.
const MAX_NODES: usize = 1 << 20;

/// One YAML node and where it starts (1-based line and column).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub line: usize,
    pub col: usize,
    pub kind: Kind,
}

/// What a node holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// A scalar; `plain` when unquoted (only a plain `null`, `~` or nothing is null).
    Scalar {
        value: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// YAML's tag of the node as Go's decoder names it in its errors (`!!str`, `!!seq`…).
    pub fn tag(&self) -> &'static str {
        match &self.kind {
            Kind::Seq(_) => "!!seq",
            Kind::Map(_) => "!!map",
            Kind::Scalar { value, plain } => {
                if !plain {
                    return "!!str";
                }
                match value.as_str() {
                    "" | "~" | "null" | "Null" | "NULL" => "!!null",
                    "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => "!!bool",
                    v if v.parse::<i64>().is_ok() => "!!int",
                    v if v.parse::<f64>().is_ok() => "!!float",
                    _ => "!!str",
                }
            }
        }
    }

    /// Whether this is YAML's null.
    pub fn is_null(&self) -> bool {
        self.tag() == "!!null"
    }
}

/// Reads the first document of `text`; `Ok(None)` for an empty one.
pub(crate) fn parse(text: &str) -> Result<Option<Node>, String> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Open> = Vec::new();
    let mut anchors: HashMap<usize, (Node, usize)> = HashMap::new();
    let mut nodes = 0usize;
    let mut root: Option<Node> = None;
    let mut started = false;
    for ev in parser.by_ref() {
        let (ev, span) = ev.map_err(|e| format!("yaml: {e}"))?;
        let (line, col) = (span.start.line(), span.start.col() + 1);
        let done = match ev {
            Event::DocumentStart(_) => {
                if started {
                    // Only the first document is read, as Prometheus reads rule files.
                    break;
                }
                started = true;
                None
            }
            Event::DocumentEnd => {
                if root.is_some() {
                    break;
                }
                None
            }
            Event::StreamStart | Event::StreamEnd | Event::Nothing => None,
            Event::Alias(id) => {
                let (node, size) = anchors
                    .get(&id)
                    .ok_or_else(|| format!("yaml: line {line}: unknown anchor"))?;
                nodes = nodes.saturating_add(*size);
                if nodes > MAX_NODES {
                    return Err(format!("yaml: line {line}: document too large"));
                }
                Some(node.clone())
            }
            Event::Scalar(value, style, anchor, _) => {
                let node = Node {
                    line,
                    col,
                    kind: Kind::Scalar {
                        value: value.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    },
                };
                if anchor > 0 {
                    anchors.insert(anchor, (node.clone(), 1));
                }
                nodes += 1;
                Some(node)
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(format!("yaml: line {line}: nested deeper than {MAX_DEPTH}"));
                }
                let is_map = matches!(ev, Event::MappingStart(..));
                stack.push(Open {
                    line,
                    col,
                    anchor,
                    first_node: nodes,
                    items: Vec::new(),
                    is_map,
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let open = stack.pop().ok_or("yaml: unbalanced collection")?;
                let kind = if open.is_map {
                    let mut pairs = Vec::with_capacity(open.items.len() / 2);
                    let mut it = open.items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    Kind::Map(merge_keys(pairs))
                } else {
                    Kind::Seq(open.items)
                };
                let node = Node {
                    line: open.line,
                    col: open.col,
                    kind,
                };
                nodes += 1;
                if open.anchor > 0 {
                    anchors.insert(open.anchor, (node.clone(), nodes - open.first_node));
                }
                Some(node)
            }
        };
        if let Some(node) = done {
            match stack.last_mut() {
                Some(open) => open.items.push(node),
                None => root = Some(node),
            }
        }
    }
    Ok(root)
}

/// A mapping's `<<` merge keys replaced by the entries of the mappings they name, the
/// mapping's own keys winning, as YAML 1.1's merge key (which Go's decoder reads) says.
fn merge_keys(pairs: Vec<(Node, Node)>) -> Vec<(Node, Node)> {
    let is_merge =
        |k: &Node| matches!(&k.kind, Kind::Scalar { value, plain: true } if value == "<<");
    if !pairs.iter().any(|(k, _)| is_merge(k)) {
        return pairs;
    }
    let (merges, mut own): (Vec<_>, Vec<_>) = pairs.into_iter().partition(|(k, _)| is_merge(k));
    let sources = merges.into_iter().flat_map(|(_, v)| match v.kind {
        Kind::Seq(items) => items,
        _ => vec![v],
    });
    for src in sources {
        if let Kind::Map(entries) = src.kind {
            for (k, v) in entries {
                if !own.iter().any(|(o, _)| o.kind == k.kind) {
                    own.push((k, v));
                }
            }
        }
    }
    own
}

/// A collection whose end has not been read yet.
struct Open {
    line: usize,
    col: usize,
    anchor: usize,
    /// The node count when it opened: its size is the count at its end less this.
    first_node: usize,
    items: Vec<Node>,
    is_map: bool,
}

#[cfg(test)]
mod tests {
    use super::{Kind, parse};

    #[test]
    fn nodes_know_their_line_and_column() {
        let doc = parse("groups:\n  - name: a\n    rules:\n      - record: x\n        expr: y\n")
            .unwrap()
            .unwrap();
        let Kind::Map(top) = &doc.kind else { panic!() };
        let Kind::Seq(groups) = &top[0].1.kind else {
            panic!()
        };
        assert_eq!((groups[0].line, groups[0].col), (2, 5));
        let Kind::Map(g) = &groups[0].kind else {
            panic!()
        };
        let Kind::Seq(rules) = &g[1].1.kind else {
            panic!()
        };
        let Kind::Map(r) = &rules[0].kind else {
            panic!()
        };
        assert_eq!((r[1].1.line, r[1].1.col), (5, 15));
    }

    #[test]
    fn aliases_anchors_and_hostile_nesting() {
        let doc = parse("a: &x 5\nb: *x\n").unwrap().unwrap();
        let Kind::Map(m) = &doc.kind else { panic!() };
        assert_eq!(m[1].1.kind, m[0].1.kind);
        assert!(parse(&"[".repeat(10_000)).is_err());
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = format!("*a{}", i - 1);
            bomb += &format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", "));
        }
        assert!(parse(&bomb).unwrap_err().contains("too large"));
        assert!(parse("a: [").is_err());
        assert_eq!(parse("").unwrap(), None);
    }
}
