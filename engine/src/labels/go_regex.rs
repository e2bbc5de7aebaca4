//! Go's regular expressions (RE2 syntax, as Prometheus compiles matchers, relabel rules and
//! `label_replace`) read by Rust's `regex`: the two agree on almost all syntax, but Go's Perl
//! classes and word boundaries are ASCII-only where Rust's are Unicode. `\d` is `[0-9]` in Go
//! and every Unicode digit in Rust, `\w` is `[0-9A-Za-z_]` against every letter, `\s` is
//! `[\t\n\f\r ]` against every Unicode space. [`go_to_rust`] rewrites those into the classes Go
//! means, so a matcher selects what Prometheus selects.

use std::borrow::Cow;

/// `pattern` with Go's Perl classes (`\d \D \s \S \w \W`) and word boundaries (`\b \B`)
/// spelled as the ASCII classes Go reads them as; everything else unchanged. Borrowed when
/// there is nothing to rewrite.
pub fn go_to_rust(pattern: &str) -> Cow<'_, str> {
    if !pattern.contains('\\') {
        return Cow::Borrowed(pattern);
    }
    let b = pattern.as_bytes();
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut copied = 0;
    let mut i = 0;
    // Inside `[...]`: the bracket depth (POSIX classes `[:alpha:]` nest one level), and where
    // the class began, since a `]` right after `[` or `[^` is a literal.
    let mut class_start: Option<usize> = None;
    while i < b.len() {
        match b[i] {
            b'\\' if i + 1 < b.len() => {
                let in_class = class_start.is_some();
                let with = match (b[i + 1], in_class) {
                    (b'd', false) => Some("[0-9]"),
                    (b'D', false) => Some("[^0-9]"),
                    (b'w', false) => Some("[0-9A-Za-z_]"),
                    (b'W', false) => Some("[^0-9A-Za-z_]"),
                    (b's', false) => Some(r"[\t\n\f\r ]"),
                    (b'S', false) => Some(r"[^\t\n\f\r ]"),
                    (b'b', false) => Some(r"(?-u:\b)"),
                    (b'B', false) => Some(r"(?-u:\B)"),
                    (b'd', true) => Some("0-9"),
                    (b'D', true) => Some("[:^digit:]"),
                    (b'w', true) => Some("0-9A-Za-z_"),
                    (b'W', true) => Some("[:^word:]"),
                    (b's', true) => Some(r"\t\n\f\r "),
                    // Everything but tab, newline, form feed, carriage return and space.
                    (b'S', true) => Some(r"\x00-\x08\x0B\x0E-\x1F!-\x{10FFFF}"),
                    _ => None,
                };
                if let Some(with) = with {
                    out.push_str(&pattern[copied..i]);
                    out.push_str(with);
                    copied = i + 2;
                }
                // An escaped character is never a bracket or another escape.
                i += 2;
                // `\x{...}`, `\p{...}` and `\P{...}` carry braces of their own; nothing in
                // them needs rewriting, so they are passed over whole.
                if matches!(b[i - 1], b'x' | b'p' | b'P') && b.get(i) == Some(&b'{') {
                    while i < b.len() && b[i] != b'}' {
                        i += 1;
                    }
                }
                continue;
            }
            b'[' => match class_start {
                None => {
                    class_start = Some(i);
                    // A `]` first in the class (after an optional `^`) is a literal.
                    let mut j = i + 1;
                    if b.get(j) == Some(&b'^') {
                        j += 1;
                    }
                    if b.get(j) == Some(&b']') {
                        i = j + 1;
                        continue;
                    }
                }
                // A POSIX class inside a bracket: skip to its closing `:]`.
                Some(_) if b.get(i + 1) == Some(&b':') => {
                    if let Some(end) = pattern[i + 2..].find(":]") {
                        i += 2 + end + 2;
                        continue;
                    }
                }
                Some(_) => {}
            },
            b']' if class_start.is_some() => class_start = None,
            _ => {}
        }
        i += 1;
    }
    if copied == 0 {
        return Cow::Borrowed(pattern);
    }
    out.push_str(&pattern[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::go_to_rust;

    fn full(p: &str) -> regex::Regex {
        regex::Regex::new(&format!("^(?s:{})$", go_to_rust(p))).unwrap()
    }

    #[test]
    fn perl_classes_are_ascii_as_in_go() {
        let d = full(r"\d+");
        assert!(d.is_match("0123456789"));
        // Arabic-Indic and full-width digits are digits to Rust's Unicode `\d`, not to Go's.
        assert!(!d.is_match("٣"));
        assert!(!d.is_match("３"));
        let w = full(r"\w+");
        assert!(w.is_match("abc_XYZ_09"));
        assert!(!w.is_match("é"));
        assert!(full(r"\W").is_match("é"));
        let s = full(r"a\sb");
        assert!(s.is_match("a b") && s.is_match("a\tb"));
        // A no-break space and a vertical tab are not spaces to Go.
        assert!(!s.is_match("a\u{a0}b") && !s.is_match("a\u{b}b"));
        assert!(full(r"a\Sb").is_match("a\u{a0}b"));
        assert!(full(r"\D").is_match("٣"));
    }

    #[test]
    fn classes_inside_brackets_and_escapes_are_read_as_go_reads_them() {
        let c = full(r"[\w.-]+");
        assert!(c.is_match("api-v1.2_x"));
        assert!(!c.is_match("é"));
        assert!(full(r"[^\d]").is_match("٣"));
        assert!(!full(r"[\S]").is_match(" "));
        assert!(full(r"[\S]").is_match("\u{b}"));
        assert!(full(r"[\W]").is_match("é") && !full(r"[\W]").is_match("a"));
        // A `]` first in a class is a literal; the `\d` after the class is outside it.
        assert!(full(r"[]a]\d").is_match("]7"));
        assert!(full(r"[[:alpha:]\d]+").is_match("ab12"));
        // Escaped backslashes and other escapes stay as they are.
        assert_eq!(go_to_rust(r"a\\d"), r"a\\d");
        assert_eq!(go_to_rust(r"\pL\x{64}\."), r"\pL\x{64}\.");
        assert_eq!(go_to_rust("plain"), "plain");
    }

    #[test]
    fn word_boundaries_are_ascii() {
        let b = full(r".*\bx\b.*");
        assert!(b.is_match("a x b"));
        // To Go, `é` is not a word character, so `éx` has a boundary before the `x`.
        assert!(b.is_match("éxé"));
        assert!(!full(r".*\Bx.*").is_match("éx"));
    }
}
