//! Rules' templates with Prometheus's functions ([`super::template`]) put to work: alert labels
//! and annotations expanded over each alert's sample, the `query` function answered by the
//! rules' own querier, and rule files' templates checked when they are read.

use std::collections::BTreeMap;

use super::alerting::AlertTemplates;
use super::group::RuleQuerier;
use super::template::{
    QuerySample, TemplateData, TemplateError, TemplateQuerier, TemplateValue, expand,
    expand_or_error_text,
};
use super::unittest::TemplatesFactory;
use crate::InstantSample;

/// Expands alert templates as Prometheus does, with a ruler's external labels and URL.
pub struct PrometheusTemplates<'q> {
    external_labels: BTreeMap<String, String>,
    external_url: String,
    querier: Option<&'q dyn RuleQuerier>,
}

impl<'q> PrometheusTemplates<'q> {
    /// Templates seeing `external_labels` and `external_url`, their `query` function
    /// answered by `querier` (without one, it fails).
    pub fn new(
        external_labels: BTreeMap<String, String>,
        external_url: String,
        querier: Option<&'q dyn RuleQuerier>,
    ) -> Self {
        PrometheusTemplates {
            external_labels,
            external_url,
            querier,
        }
    }
}

impl Default for PrometheusTemplates<'_> {
    fn default() -> Self {
        PrometheusTemplates::new(BTreeMap::new(), String::new(), None)
    }
}

impl std::fmt::Debug for PrometheusTemplates<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusTemplates")
            .field("external_labels", &self.external_labels)
            .field("external_url", &self.external_url)
            .finish_non_exhaustive()
    }
}

/// The rules' querier as the template `query` function sees it.
struct Query<'a>(&'a dyn RuleQuerier);

impl TemplateQuerier for Query<'_> {
    fn query(&self, expr: &str, ts_ms: i64) -> Result<Vec<QuerySample>, String> {
        Ok(self
            .0
            .query(expr, ts_ms)?
            .into_iter()
            .map(|s| QuerySample {
                labels: s
                    .labels
                    .iter()
                    .map(|l| (l.name.to_string(), l.value.to_string()))
                    .collect(),
                value: match &s.h {
                    Some(h) => TemplateValue::from(&**h),
                    None => TemplateValue::Float(s.v),
                },
            })
            .collect())
    }
}

impl AlertTemplates for PrometheusTemplates<'_> {
    fn expand(&self, rule: &str, text: &str, sample: &InstantSample, ts_ms: i64) -> String {
        // Prometheus hands templates the sample's whole label set, `__name__` included.
        let labels: BTreeMap<String, String> = sample
            .labels
            .iter()
            .map(|l| (l.name.to_string(), l.value.to_string()))
            .collect();
        let value = match &sample.h {
            Some(h) => TemplateValue::from(&**h),
            None => TemplateValue::Float(sample.v),
        };
        let data = TemplateData {
            labels: &labels,
            external_labels: &self.external_labels,
            external_url: &self.external_url,
            value: &value,
        };
        let q = self.querier.map(Query);
        let name = format!("__alert_{rule}");
        // A failure is the alert's text (`<error expanding template: …>`), as in Prometheus.
        expand_or_error_text(
            &name,
            text,
            &data,
            ts_ms,
            q.as_ref().map(|q| q as &dyn TemplateQuerier),
        )
    }
}

impl TemplatesFactory for PrometheusTemplates<'_> {
    fn make<'q>(
        &self,
        external_labels: &BTreeMap<String, String>,
        external_url: &str,
        querier: &'q dyn RuleQuerier,
    ) -> Box<dyn AlertTemplates + 'q> {
        Box::new(PrometheusTemplates::new(
            external_labels.clone(),
            external_url.to_string(),
            Some(querier),
        ))
    }
}

/// Whether `text` parses as a template named `name`; `Err` is the parser's message. Rule
/// files are checked with it when they are read.
pub fn parse_check(name: &str, text: &str) -> Result<(), String> {
    let empty = BTreeMap::new();
    let value = TemplateValue::Float(0.0);
    let data = TemplateData {
        labels: &empty,
        external_labels: &empty,
        external_url: "",
        value: &value,
    };
    match expand(name, text, &data, 0, None) {
        Err(TemplateError::Parse { message, .. }) => Err(message),
        _ => Ok(()),
    }
}
