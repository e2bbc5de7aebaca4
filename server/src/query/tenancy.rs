//! Tenancy as Thanos's querier enforces it (`--query.enforce-tenancy`): each request names its
//! tenant in a header (`--query.tenant-header`, `THANOS-TENANT`; gRPC metadata of the same
//! name, lower-cased, on the StoreAPI), or gets the default tenant, and every read it makes is
//! held to series whose tenant label (`--query.tenant-label-name`, `tenant_id`) is that tenant:
//! the matcher is added to every selection, label name and label value lookup, so a query for
//! tenant A never sees tenant B's series, whatever its own matchers say.

use std::sync::Arc;

use clap::Args;
use gauntlet_engine::labels::Matcher;
use gauntlet_engine::query::{Queryable, SelectHints, Series, SeriesStream};

use super::ReadView;

/// The querier's tenancy flags, named as Thanos's.
#[derive(Debug, Clone, Args)]
pub struct TenancyFlags {
    /// The HTTP header (and gRPC metadata key) that names a request's tenant.
    #[arg(long = "query.tenant-header", default_value = "THANOS-TENANT")]
    pub tenant_header: String,
    /// The tenant of requests that name none.
    #[arg(long = "query.default-tenant-id", default_value = "default-tenant")]
    pub default_tenant: String,
    /// The label that holds a series' tenant (receive's `--receive.tenant-label-name`).
    #[arg(long = "query.tenant-label-name", default_value = "tenant_id")]
    pub tenant_label: String,
    /// Hold every request to its tenant's series.
    #[arg(long = "query.enforce-tenancy")]
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
}
