//! Arbitrary text through gauntlet-promql's lexer, parser and printer: the lexer ends with a
//! token stream of ordered, in-bounds positions or one error; the parser gives a tree or an
//! error placed inside the query, never a panic; a tree prints as text that parses back and
//! prints the same, on one line and over several.

#![no_main]

use gauntlet_promql::parser::lex::{Kind, Lexer};
use gauntlet_promql::parser::{Options, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    let mut lexer = Lexer::new(q);
    let mut last_end = 0;
    for _ in 0..=q.len() + 1 {
        match lexer.next_token() {
            Ok(t) => {
                assert!(t.start >= last_end && t.start <= t.end && t.end <= q.len(), "{t:?}");
                last_end = t.end;
                if t.kind == Kind::Eof {
                    break;
                }
            }
            Err(e) => {
                assert!(e.pos <= q.len(), "{e:?}");
                break;
            }
        }
    }
    for opts in [
        Options::all_features(),
        Options::default(),
        Options {
            max_depth: 8,
            ..Options::all_features()
        },
    ] {
        match parse(q, &opts) {
            Ok(e) => {
                let printed = e.to_string();
                // The depth limit counts nesting as written, and the printer may write a
                // selector's modifiers in another order (`@` before `offset`): the printed
                // text is read back with room to spare, since the property is the printing.
                let relaxed = Options {
                    max_depth: opts.max_depth.max(64),
                    ..opts
                };
                let again = parse(&printed, &relaxed)
                    .unwrap_or_else(|err| panic!("{q:?} prints as {printed:?}: {err}"));
                assert_eq!(again.to_string(), printed, "{q:?}");
                // So does the multi-line form, at the 100-byte limit and with every node broken.
                for max in [100, 0] {
                    let pretty = e.pretty_with_max_line(max);
                    let again = parse(&pretty, &relaxed)
                        .unwrap_or_else(|err| panic!("{q:?} is written {pretty:?}: {err}"));
                    assert_eq!(again.to_string(), printed, "{q:?} is written {pretty:?}");
                }
            }
            Err(err) => assert!(err.span.start <= q.len(), "{q:?}: {err:?}"),
        }
    }
});
