//! The per-series label checks of Thanos Receive (`labelpb.ValidateLabels`), plus the label
//! limits a receiver may impose (the 2.0 specification allows them; Thanos has none).

use crate::error::{ECHO_BYTES, clip};

/// Limits on one series' labels; 0 means unlimited. The defaults check nothing beyond what
/// Thanos Receive checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LabelLimits {
    /// Most labels per series, `__name__` included.
    pub max_labels: usize,
    /// Longest label name, bytes.
    pub max_name_bytes: usize,
    /// Longest label value, bytes.
    pub max_value_bytes: usize,
    /// Refuse series without a `__name__` label, as Prometheus's own receiver does (Thanos
    /// accepts them).
    pub require_metric_name: bool,
}

/// Why one series of a request is refused; the rest of the request is still written. The
/// first four are Thanos's `labelpb.ValidateLabels` errors, which Thanos answers with 409
/// Conflict ([`LabelError::status`]); the others are Gauntlet's own limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LabelError {
    /// The series has no labels at all.
    #[error("empty label set")]
    Empty,
    /// A label name is "" (index in the series' labels).
    #[error("label {index} has an empty name")]
    EmptyName {
        /// Index of the label.
        index: usize,
    },
    /// A label value is "" (Prometheus would drop the label; Thanos refuses the series).
    #[error("label {name:?} has an empty value")]
    EmptyValue {
        /// The label's name, clipped.
        name: String,
    },
    /// Labels are not sorted by name.
    #[error("labels out of order: {name:?} after {previous:?}")]
    Unsorted {
        /// The label out of place, clipped.
        name: String,
        /// The label before it, clipped.
        previous: String,
    },
    /// Two labels share a name.
    #[error("duplicate label name {name:?}")]
    DuplicateName {
        /// The name, clipped.
        name: String,
    },
    /// No `__name__` label, with [`LabelLimits::require_metric_name`].
    #[error("no __name__ label")]
    NoMetricName,
    /// More labels than [`LabelLimits::max_labels`].
    #[error("{count} labels, over the limit of {limit}")]
    TooManyLabels {
        /// The limit.
        limit: usize,
        /// Labels the series has.
        count: usize,
    },
    /// A name longer than [`LabelLimits::max_name_bytes`].
    #[error("label name {name:?} of {len} bytes is over the limit of {limit}")]
    NameTooLong {
        /// The limit, bytes.
        limit: usize,
        /// The name's length, bytes.
        len: usize,
        /// The name, clipped.
        name: String,
    },
    /// A value longer than [`LabelLimits::max_value_bytes`].
    #[error("value of label {name:?} of {len} bytes is over the limit of {limit}")]
    ValueTooLong {
        /// The limit, bytes.
        limit: usize,
        /// The value's length, bytes.
        len: usize,
        /// The label's name, clipped.
        name: String,
    },
}

impl LabelError {
    /// Thanos's own wording of the error it counts this one under (its `labelpb` sentinel),
    /// for a receiver that answers as Thanos does: `add N series: <reason>`. `None` for
    /// Gauntlet's limits.
    pub fn thanos_reason(&self) -> Option<&'static str> {
        match self {
            LabelError::Empty | LabelError::EmptyName { .. } | LabelError::EmptyValue { .. } => {
                Some("label set contains a label with empty name or value")
            }
            LabelError::Unsorted { .. } => Some("out of order labels"),
            LabelError::DuplicateName { .. } => Some("label set contains duplicate label names"),
            _ => None,
        }
    }

    /// The HTTP status the request gets when this is its worst error: 409 Conflict for the
    /// checks Thanos makes (it counts them as conflicts, which Prometheus does not retry),
    /// 400 Bad Request for the limits (the 2.0 specification's answer to invalid samples).
    pub fn status(&self) -> u16 {
        if self.thanos_reason().is_some() {
            409
        } else {
            400
        }
    }
}

/// Validates one series' labels as Thanos Receive does, then against `limits`: at least one
/// label; no empty name or value; names strictly increasing (sorted, no duplicates); then
/// the label count and the name and value lengths (bytes).
pub fn validate_labels(labels: &[(&str, &str)], limits: &LabelLimits) -> Result<(), LabelError> {
    let Some(&(first, _)) = labels.first() else {
        return Err(LabelError::Empty);
    };
    let mut previous = first;
    for (index, &(name, value)) in labels.iter().enumerate() {
        if name.is_empty() {
            return Err(LabelError::EmptyName { index });
        }
        if value.is_empty() {
            return Err(LabelError::EmptyValue { name: echo(name) });
        }
        if index > 0 {
            if name == previous {
                return Err(LabelError::DuplicateName { name: echo(name) });
            }
            if name < previous {
                return Err(LabelError::Unsorted {
                    name: echo(name),
                    previous: echo(previous),
                });
            }
        }
        previous = name;
    }
    if limits.require_metric_name && !labels.iter().any(|l| l.0 == "__name__") {
        return Err(LabelError::NoMetricName);
    }
    if limits.max_labels > 0 && labels.len() > limits.max_labels {
        return Err(LabelError::TooManyLabels {
            limit: limits.max_labels,
            count: labels.len(),
        });
    }
    for &(name, value) in labels {
        if limits.max_name_bytes > 0 && name.len() > limits.max_name_bytes {
            return Err(LabelError::NameTooLong {
                limit: limits.max_name_bytes,
                len: name.len(),
                name: echo(name),
            });
        }
        if limits.max_value_bytes > 0 && value.len() > limits.max_value_bytes {
            return Err(LabelError::ValueTooLong {
                limit: limits.max_value_bytes,
                len: value.len(),
                name: echo(name),
            });
        }
    }
    Ok(())
}

fn echo(s: &str) -> String {
    clip(s, ECHO_BYTES).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: LabelLimits = LabelLimits {
        max_labels: 0,
        max_name_bytes: 0,
        max_value_bytes: 0,
        require_metric_name: false,
    };

    #[test]
    fn thanos_checks() {
        let ok = [("__name__", "up"), ("instance", "a:9100"), ("job", "node")];
        assert_eq!(validate_labels(&ok, &NONE), Ok(()));
        // Thanos does not ask for a metric name.
        assert_eq!(validate_labels(&[("job", "x")], &NONE), Ok(()));
        assert_eq!(validate_labels(&[], &NONE), Err(LabelError::Empty));
        assert_eq!(
            validate_labels(&[("a", "1"), ("", "2")], &NONE),
            Err(LabelError::EmptyName { index: 1 })
        );
        assert_eq!(
            validate_labels(&[("a", "")], &NONE),
            Err(LabelError::EmptyValue { name: "a".into() })
        );
        assert_eq!(
            validate_labels(&[("b", "1"), ("a", "2")], &NONE),
            Err(LabelError::Unsorted {
                name: "a".into(),
                previous: "b".into()
            })
        );
        assert_eq!(
            validate_labels(&[("a", "1"), ("a", "2")], &NONE),
            Err(LabelError::DuplicateName { name: "a".into() })
        );
        // The first problem in label order wins, as in Thanos's single pass.
        assert_eq!(
            validate_labels(&[("b", "1"), ("a", ""), ("", "x")], &NONE),
            Err(LabelError::EmptyValue { name: "a".into() })
        );
        for e in [
            LabelError::Empty,
            LabelError::EmptyName { index: 0 },
            LabelError::DuplicateName { name: "a".into() },
        ] {
            assert_eq!(e.status(), 409);
            assert!(e.thanos_reason().is_some());
        }
    }

    #[test]
    fn limits() {
        let l = [("__name__", "up"), ("job", "node-exporter")];
        let lim = |max_labels, max_name_bytes, max_value_bytes| LabelLimits {
            max_labels,
            max_name_bytes,
            max_value_bytes,
            require_metric_name: true,
        };
        assert_eq!(validate_labels(&l, &lim(2, 8, 13)), Ok(()));
        assert_eq!(
            validate_labels(&l, &lim(1, 0, 0)),
            Err(LabelError::TooManyLabels { limit: 1, count: 2 })
        );
        assert_eq!(
            validate_labels(&l, &lim(0, 7, 0)),
            Err(LabelError::NameTooLong {
                limit: 7,
                len: 8,
                name: "__name__".into()
            })
        );
        let e = validate_labels(&l, &lim(0, 0, 12)).unwrap_err();
        assert_eq!(
            e,
            LabelError::ValueTooLong {
                limit: 12,
                len: 13,
                name: "job".into()
            }
        );
        assert_eq!((e.status(), e.thanos_reason()), (400, None));
        assert_eq!(
            validate_labels(&[("job", "x")], &lim(0, 0, 0)),
            Err(LabelError::NoMetricName)
        );
    }

    #[test]
    fn messages_stay_short() {
        let long = "n".repeat(100_000);
        let e = validate_labels(&[(long.as_str(), "")], &NONE).unwrap_err();
        assert!(e.to_string().len() < 300, "{}", e.to_string().len());
    }
}
