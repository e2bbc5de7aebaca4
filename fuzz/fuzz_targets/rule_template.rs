//! Arbitrary text as an alert template: parsing and expanding it over an alert with labels and
//! a value must give text or an error within the output bound, never panic or overflow the
//! stack.

#![no_main]

use std::collections::BTreeMap;

use gauntlet_promql::rules::template::{MAX_OUTPUT_BYTES, TemplateData, TemplateValue, expand};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let labels: BTreeMap<String, String> = [("instance", "a:9100"), ("job", "node")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let ext: BTreeMap<String, String> = [("cluster".to_string(), "eu1".to_string())].into();
    let value = TemplateValue::Float(1234.5);
    let data = TemplateData {
        labels: &labels,
        external_labels: &ext,
        external_url: "http://localhost:9090",
        value: &value,
    };
    if let Ok(out) = expand("__alert_Fuzz", text, &data, 1_700_000_000_000, None) {
        assert!(out.len() <= MAX_OUTPUT_BYTES, "{} bytes", out.len());
    }
});
