//! Tenancy as Thanos's querier enforces it (`--query.enforce-tenancy`): each request names its
//! tenant in a header (`--query.tenant-header`, `THANOS-TENANT`; gRPC metadata of the same
//! name, lower-cased, on the StoreAPI), or gets the default tenant, and every read it makes is
//! held to series whose tenant label (`--query.tenant-label-name`, `tenant_id`) is that tenant:
//! the matcher is added to every selection, label name and label value lookup, so a query for
//! tenant A never sees tenant B's series, whatever its own matchers say.
//!
//! Every role that reads series holds itself to it the same way: the querier's HTTP API
//! ([`TenantView`]) and every StoreAPI (`query`, `all`, `receive`, `store`: [`scope_call`]).
//! The status pages that list tenants, blocks or label sets show a tenant its own rows only,
//! and the default tenant (the operator's requests, without a header) every row
//! ([`StatusView`]).

use std::sync::Arc;

use clap::Args;
use gauntlet_engine::labels::Matcher;
use gauntlet_engine::query::{Queryable, SelectHints, Selection, Series, SeriesStream};
use gauntlet_proto::thanos;

use super::ReadView;

/// The querier's tenancy flags, named as Thanos's. Their ids are their names, so a role with
/// flags of its own on the same fields (`receive`'s `--receive.tenant-header`, …) takes both.
#[derive(Debug, Clone, Args)]
pub struct TenancyFlags {
    /// The HTTP header (and gRPC metadata key) that names a request's tenant.
    #[arg(
        id = "query.tenant-header",
        long = "query.tenant-header",
        default_value = "THANOS-TENANT"
    )]
    pub tenant_header: String,
    /// The tenant of requests that name none.
    #[arg(
        id = "query.default-tenant-id",
        long = "query.default-tenant-id",
        default_value = "default-tenant"
    )]
    pub default_tenant: String,
    /// The label that holds a series' tenant (receive's `--receive.tenant-label-name`).
    #[arg(
        id = "query.tenant-label-name",
        long = "query.tenant-label-name",
        default_value = "tenant_id"
    )]
    pub tenant_label: String,
    /// Hold every request to its tenant's series.
    #[arg(id = "query.enforce-tenancy", long = "query.enforce-tenancy")]
    pub enforce: bool,
}

impl TenancyFlags {
    /// The tenancy to enforce; `None` when it is off.
    pub fn tenancy(&self) -> anyhow::Result<Option<Tenancy>> {
        if !self.enforce {
            return Ok(None);
        }
        if http::HeaderName::from_bytes(self.tenant_header.as_bytes()).is_err() {
            anyhow::bail!(
                "--query.tenant-header={:?}: not an HTTP header name",
                self.tenant_header
            );
        }
        if self.tenant_label.is_empty() {
            anyhow::bail!("--query.tenant-label-name: empty");
        }
        Ok(Some(Tenancy {
            header: self.tenant_header.to_ascii_lowercase(),
            default_tenant: self.default_tenant.clone(),
            label: self.tenant_label.clone(),
        }))
    }
}

/// Tenancy in force: where a request's tenant comes from and which label holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenancy {
    /// Header name, lower-cased (HTTP headers and gRPC metadata keys alike).
    pub header: String,
    /// The tenant of a request that names none.
    pub default_tenant: String,
    /// The series label holding the tenant.
    pub label: String,
}

impl Tenancy {
    /// The tenant a request names in `value` (its header), or the default.
    pub fn tenant(&self, value: Option<&str>) -> Result<String, String> {
        match value.map(str::trim) {
            None | Some("") => Ok(self.default_tenant.clone()),
            Some(v) if v.contains(',') => Err(format!(
                "more than one tenant in the {} header: {v:?}",
                self.header
            )),
            Some(v) => Ok(v.to_string()),
        }
    }

    /// The matcher every read of `tenant` carries.
    pub fn matcher(&self, tenant: &str) -> Matcher {
        Matcher::equal(self.label.clone(), tenant)
    }

    /// `matchers` with the tenant's matcher added.
    pub fn scoped(&self, tenant: &str, matchers: &[Matcher]) -> Vec<Matcher> {
        let mut out = matchers.to_vec();
        out.push(self.matcher(tenant));
        out
    }

    /// The tenant a request names in its tenant header (HTTP headers and gRPC metadata
    /// alike), or the default.
    pub fn tenant_of(&self, headers: &http::HeaderMap) -> Result<String, String> {
        let named = headers
            .get(self.header.as_str())
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        self.tenant(named.as_deref())
    }
}

/// Holds a StoreAPI call to its tenant: the tenant its metadata (`headers`) names, or the
/// default, is added to `matchers` as an equality matcher on the tenant label when `tenancy`
/// is enforced; without it the call is left as it is. A header naming two tenants is
/// `InvalidArgument`.
pub fn scope_call(
    tenancy: Option<&Tenancy>,
    headers: &http::HeaderMap,
    matchers: &mut Vec<thanos::LabelMatcher>,
) -> Result<(), tonic::Status> {
    let Some(t) = tenancy else {
        return Ok(());
    };
    let tenant = t
        .tenant_of(headers)
        .map_err(tonic::Status::invalid_argument)?;
    matchers.push(thanos::LabelMatcher {
        r#type: thanos::label_matcher::Type::Eq as i32,
        name: t.label.clone(),
        value: tenant,
    });
    Ok(())
}

/// What a request to a status page that lists per-tenant rows (tenants, blocks, label sets)
/// may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusView {
    /// Every row: tenancy is off, or the request is the default tenant's, which is how an
    /// operator's request without a tenant header arrives.
    All,
    /// Only the rows of one tenant.
    Tenant {
        /// The label holding a series' (or block's) tenant.
        label: String,
        /// The request's tenant.
        tenant: String,
    },
}

impl StatusView {
    /// The view of a request with `headers`; a header naming two tenants is an error.
    pub fn of(tenancy: Option<&Tenancy>, headers: &http::HeaderMap) -> Result<StatusView, String> {
        let Some(t) = tenancy else {
            return Ok(StatusView::All);
        };
        let tenant = t.tenant_of(headers)?;
        Ok(if tenant == t.default_tenant {
            StatusView::All
        } else {
            StatusView::Tenant {
                label: t.label.clone(),
                tenant,
            }
        })
    }

    /// Whether the row of the tenant named `name` is shown.
    pub fn shows_tenant(&self, name: &str) -> bool {
        match self {
            StatusView::All => true,
            StatusView::Tenant { tenant, .. } => tenant == name,
        }
    }

    /// Whether a row labelled as `value_of` answers (a label's value by name) is shown: one
    /// whose tenant label is the request's tenant. A row without the tenant label belongs to
    /// no tenant, and only the default tenant sees it.
    pub fn shows_labels<'a>(&self, value_of: impl FnOnce(&str) -> Option<&'a str>) -> bool {
        match self {
            StatusView::All => true,
            StatusView::Tenant { label, tenant } => value_of(label) == Some(tenant.as_str()),
        }
    }

    /// Whether every row is shown (pages that cannot be cut per tenant are the operator's).
    pub fn is_all(&self) -> bool {
        *self == StatusView::All
    }
}

/// A request's view held to one tenant's series.
pub struct TenantView {
    inner: Arc<dyn ReadView>,
    matcher: Matcher,
}

impl std::fmt::Debug for TenantView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantView")
            .field("matcher", &self.matcher)
            .finish_non_exhaustive()
    }
}

impl TenantView {
    /// `inner` as seen by the tenant whose matcher is `matcher`.
    pub fn new(inner: Arc<dyn ReadView>, matcher: Matcher) -> TenantView {
        TenantView { inner, matcher }
    }

    fn with(&self, matchers: &[Matcher]) -> Vec<Matcher> {
        let mut out = matchers.to_vec();
        out.push(self.matcher.clone());
        out
    }
}

impl Queryable for TenantView {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> gauntlet_engine::Result<Vec<Series>> {
        self.inner.select(&self.with(matchers), mint, maxt, hints)
    }

    fn select_stream<'a>(
        &'a self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> gauntlet_engine::Result<Box<dyn SeriesStream + 'a>> {
        self.inner
            .select_stream(&self.with(matchers), mint, maxt, hints)
    }

    fn prefetch(&self, selections: &[Selection]) {
        let held: Vec<Selection> = selections
            .iter()
            .map(|s| Selection {
                matchers: self.with(&s.matchers),
                ..s.clone()
            })
            .collect();
        self.inner.prefetch(&held);
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> gauntlet_engine::Result<Vec<String>> {
        self.inner.label_names(&self.with(matchers), mint, maxt)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> gauntlet_engine::Result<Vec<String>> {
        self.inner
            .label_values(name, &self.with(matchers), mint, maxt)
    }
}

impl ReadView for TenantView {
    fn warnings(&self) -> Vec<String> {
        self.inner.warnings()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_without_a_tenant_gets_the_default_and_two_tenants_are_refused() {
        let flags = TenancyFlags {
            tenant_header: "THANOS-TENANT".into(),
            default_tenant: "default-tenant".into(),
            tenant_label: "tenant_id".into(),
            enforce: true,
        };
        let t = flags.tenancy().unwrap().unwrap();
        assert_eq!(t.header, "thanos-tenant");
        assert_eq!(t.tenant(None).unwrap(), "default-tenant");
        assert_eq!(t.tenant(Some(" a ")).unwrap(), "a");
        assert!(t.tenant(Some("a,b")).is_err());
        let m = t.scoped("a", &[Matcher::equal("tenant_id", "b")]);
        assert_eq!(m.len(), 2);
        assert_eq!(m[1], Matcher::equal("tenant_id", "a"));
        let off = TenancyFlags {
            enforce: false,
            ..flags.clone()
        };
        assert!(off.tenancy().unwrap().is_none());
        let bad = TenancyFlags {
            tenant_header: "bad header".into(),
            ..flags
        };
        assert!(bad.tenancy().is_err());
    }

    fn enforced() -> Tenancy {
        TenancyFlags {
            tenant_header: "THANOS-TENANT".into(),
            default_tenant: "default-tenant".into(),
            tenant_label: "tenant_id".into(),
            enforce: true,
        }
        .tenancy()
        .unwrap()
        .unwrap()
    }

    fn headers(tenant: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        if let Some(t) = tenant {
            h.insert("thanos-tenant", t.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_store_call_gets_its_tenants_matcher_after_its_own() {
        let t = enforced();
        let mut m = vec![thanos::LabelMatcher {
            r#type: thanos::label_matcher::Type::Eq as i32,
            name: "tenant_id".into(),
            value: "b".into(),
        }];
        scope_call(Some(&t), &headers(Some("a")), &mut m).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[1].name.as_str(), m[1].value.as_str()),
            ("tenant_id", "a")
        );
        let mut m = Vec::new();
        scope_call(Some(&t), &headers(None), &mut m).unwrap();
        assert_eq!(m[0].value, "default-tenant");
        let err = scope_call(Some(&t), &headers(Some("a,b")), &mut m).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let mut m = Vec::new();
        scope_call(None, &headers(Some("a")), &mut m).unwrap();
        assert!(m.is_empty());
    }

    #[test]
    fn the_default_tenant_sees_every_status_row_and_a_tenant_its_own() {
        let t = enforced();
        let all = StatusView::of(Some(&t), &headers(None)).unwrap();
        assert!(all.is_all() && all.shows_tenant("b") && all.shows_labels(|_| None));
        let named_default = StatusView::of(Some(&t), &headers(Some("default-tenant"))).unwrap();
        assert!(named_default.is_all());
        let a = StatusView::of(Some(&t), &headers(Some("a"))).unwrap();
        assert!(!a.is_all());
        assert!(a.shows_tenant("a") && !a.shows_tenant("b"));
        assert!(a.shows_labels(|n| (n == "tenant_id").then_some("a")));
        assert!(!a.shows_labels(|n| (n == "tenant_id").then_some("b")));
        assert!(!a.shows_labels(|_| None));
        assert!(StatusView::of(Some(&t), &headers(Some("a,b"))).is_err());
        assert!(StatusView::of(None, &headers(Some("a"))).unwrap().is_all());
    }
}
