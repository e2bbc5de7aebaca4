//! Input meant to hurt: deep nesting and megabyte queries get a clear error or a result, never
//! a stack overflow, on a thread with a small stack.

use gauntlet_promql::parser::{Options, parse};

/// Runs `f` on a thread with a stack of `bytes`.
fn on_stack<T: Send + 'static>(bytes: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(bytes)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

/// Runs `f` on a thread with a 2 MiB stack (a tokio worker's default); a stack overflow would
/// abort the test binary.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn deep_nesting_is_refused_with_a_clear_error() {
    on_small_stack(|| {
        let opts = Options {
            max_depth: 200,
            ..Options::all_features()
        };
        let deep = [
            format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000)),
            format!("{}1", "-".repeat(100_000)),
            format!("{}x{}", "abs(".repeat(100_000), ")".repeat(100_000)),
            format!("{}x{}", "sum(".repeat(100_000), ")".repeat(100_000)),
            format!("x{}", "[1m:]".repeat(100_000)),
            format!("1{}", " + 1".repeat(100_000)),
            format!("2{}", " ^ 2".repeat(100_000)),
        ];
        for q in &deep {
            let err = parse(q, &opts).expect_err(&q[..20]);
            assert!(
                err.msg.contains("nests more than 200 levels"),
                "{}: {err}",
                &q[..20]
            );
        }
        // Deep but within the limit parses.
        let q = format!("{}1{}", "(".repeat(150), ")".repeat(150));
        parse(
            &q,
            &Options {
                max_depth: 200,
                ..Options::all_features()
            },
        )
        .unwrap();
        let q = format!("1{}", " + 1".repeat(150));
        parse(
            &q,
            &Options {
                max_depth: 200,
                ..Options::default()
            },
        )
        .unwrap();
    });
}

/// 100,000 parentheses against the default limit of 1000 levels, on the 8 MiB stack a main
/// thread has: the recursion stops at the limit, well inside the stack.
#[test]
fn the_default_depth_limit_holds_on_a_main_thread_stack() {
    on_stack(8 << 20, || {
        // 100k parentheses, the default depth limit.
        let q = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
        let err = parse(&q, &Options::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "1:1001: parse error: query nests more than 1000 levels deep"
        );
    });
}

#[test]
fn megabyte_queries_parse_or_fail_cleanly() {
    on_small_stack(|| {
        let opts = Options::default();
        let long_name = "a".repeat(1 << 20);
        parse(&long_name, &opts).unwrap();
        let long_string = format!(
            "label_replace(x, \"a\", \"{}\", \"b\", \"c\")",
            "z".repeat(1 << 20)
        );
        parse(&long_string, &opts).unwrap();
        let many_matchers: String = (0..50_000).map(|i| format!("l{i}=\"v\",")).collect();
        parse(&format!("x{{{many_matchers}}}"), &opts).unwrap();
        let unterminated = format!("x{{a=\"{}", "z".repeat(1 << 20));
        let err = parse(&unterminated, &opts).unwrap_err();
        assert_eq!(err.msg, "unterminated quoted string");
        let garbage = "$".repeat(1 << 20);
        assert_eq!(
            parse(&garbage, &opts).unwrap_err().msg,
            "unexpected character: '$'"
        );
    });
}
