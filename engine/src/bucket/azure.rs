//! Azure Blob Storage as Thanos configures it: account and key, or a connection string (the
//! form Azurite, Microsoft's storage emulator, documents), and the container created on first
//! use when it does not exist yet (Thanos's `storage_create_container`, on unless set false).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::azure::{AzureAccessKey, AzureAuthorizer, AzureCredential, MicrosoftAzure};
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpRequest, ReqwestConnector,
};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

/// Azurite's well-known development account, which `UseDevelopmentStorage=true` names.
pub(super) const DEV_ACCOUNT: &str = "devstoreaccount1";
/// The development account's published key.
pub(super) const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// What a `storage_connection_string` says.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct ConnectionString {
    /// `AccountName`.
    pub account: Option<String>,
    /// `AccountKey`.
    pub key: Option<String>,
    /// The blob service's URL: `BlobEndpoint`, or built from the protocol, account and
    /// `EndpointSuffix`.
    pub blob_endpoint: Option<String>,
    /// `SharedAccessSignature`.
    pub sas: Option<String>,
}

impl ConnectionString {
    /// Parses `Key=Value;Key=Value` (values may hold `=`, as base64 keys do).
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut protocol = "https".to_string();
        let mut suffix = None;
        let mut dev = false;
        let mut out = ConnectionString::default();
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("storage_connection_string: {part:?} is not Key=Value"))?;
            let v = v.to_string();
            match k {
                "DefaultEndpointsProtocol" => protocol = v,
                "AccountName" => out.account = Some(v),
                "AccountKey" => out.key = Some(v),
                "BlobEndpoint" => out.blob_endpoint = Some(v.trim_end_matches('/').to_string()),
                "EndpointSuffix" => suffix = Some(v),
                "SharedAccessSignature" => out.sas = Some(v),
                "UseDevelopmentStorage" => dev = v.eq_ignore_ascii_case("true"),
                // Queue, table and file endpoints, proxies: not for blobs.
                _ => {}
            }
        }
        if dev {
            out.account.get_or_insert_with(|| DEV_ACCOUNT.to_string());
            out.key.get_or_insert_with(|| DEV_KEY.to_string());
            out.blob_endpoint
                .get_or_insert_with(|| format!("http://127.0.0.1:10000/{DEV_ACCOUNT}"));
        }
        if out.blob_endpoint.is_none()
            && let (Some(account), Some(suffix)) = (&out.account, &suffix)
        {
            out.blob_endpoint = Some(format!("{protocol}://{account}.blob.{suffix}"));
        }
        if out.account.is_none() {
            return Err("storage_connection_string has no AccountName".into());
        }
        Ok(out)
    }
}

/// Where and how to create the container: its URL, the account and the key requests are
/// signed with.
#[derive(Debug)]
pub(super) struct ContainerSpec {
    /// The blob service's URL (`https://account.blob.core.windows.net`,
    /// `http://127.0.0.1:10000/devstoreaccount1`).
    pub account_url: String,
    /// The container's name.
    pub container: String,
    /// The account name.
    pub account: String,
    /// The account key (base64), which signs the create request.
    pub key: String,
    /// Whether plain HTTP is allowed (an emulator on loopback).
    pub allow_http: bool,
}

/// An Azure client that makes sure its container exists before its first request, once per
/// process (a failed attempt is tried again by the next request).
#[derive(Debug)]
pub(super) struct CreatingContainer {
    inner: Arc<MicrosoftAzure>,
    spec: Arc<ContainerSpec>,
    ready: Arc<tokio::sync::OnceCell<()>>,
}

impl std::fmt::Display for CreatingContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (creating {})", self.inner, self.spec.container)
    }
}

impl CreatingContainer {
    pub fn new(inner: MicrosoftAzure, spec: ContainerSpec) -> Self {
        CreatingContainer {
            inner: Arc::new(inner),
            spec: Arc::new(spec),
            ready: Arc::default(),
        }
    }

    async fn ready(
        ready: &tokio::sync::OnceCell<()>,
        spec: &ContainerSpec,
    ) -> object_store::Result<()> {
        ready.get_or_try_init(|| create_container(spec)).await?;
        Ok(())
    }
}

/// `PUT {account_url}/{container}?restype=container`, signed with the shared key; 201 (made)
/// and 409 (already there) both leave the container in place.
async fn create_container(spec: &ContainerSpec) -> object_store::Result<()> {
    let generic = |e: String| object_store::Error::Generic {
        store: "MicrosoftAzure",
        source: e.into(),
    };
    let client: HttpClient = ReqwestConnector::default()
        .connect(&ClientOptions::new().with_allow_http(spec.allow_http))?;
    let url = format!(
        "{}/{}?restype=container",
        spec.account_url.trim_end_matches('/'),
        spec.container
    );
    let mut req = HttpRequest::new(Bytes::new().into());
    *req.method_mut() = reqwest::Method::PUT;
    *req.uri_mut() = url
        .parse()
        .map_err(|e| generic(format!("container URL {url}: {e}")))?;
    let credential = AzureCredential::AccessKey(AzureAccessKey::try_new(&spec.key)?);
    AzureAuthorizer::new(&credential, &spec.account).try_authorize(&mut req)?;
    let resp = client
        .execute(req)
        .await
        .map_err(|e| generic(format!("creating container {}: {e}", spec.container)))?;
    let status = resp.status().as_u16();
    if status == 201 || status == 409 {
        return Ok(());
    }
    let body = resp.into_body().bytes().await.unwrap_or_default();
    Err(generic(format!(
        "creating container {} at {}: HTTP {status}: {}",
        spec.container,
        spec.account_url,
        String::from_utf8_lossy(&body)
    )))
}

#[async_trait::async_trait]
impl ObjectStore for CreatingContainer {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        Self::ready(&self.ready, &self.spec).await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Self::ready(&self.ready, &self.spec).await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        Self::ready(&self.ready, &self.spec).await?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        Self::ready(&self.ready, &self.spec).await?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let (inner, spec, ready) = (self.inner.clone(), self.spec.clone(), self.ready.clone());
        futures::stream::once(async move {
            match Self::ready(&ready, &spec).await {
                Ok(()) => inner.delete_stream(locations),
                Err(e) => futures::stream::once(async { Err(e) }).boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let (inner, spec, ready) = (self.inner.clone(), self.spec.clone(), self.ready.clone());
        let prefix = prefix.cloned();
        futures::stream::once(async move {
            match Self::ready(&ready, &spec).await {
                Ok(()) => inner.list(prefix.as_ref()),
                Err(e) => futures::stream::once(async { Err(e) }).boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        Self::ready(&self.ready, &self.spec).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        Self::ready(&self.ready, &self.spec).await?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        Self::ready(&self.ready, &self.spec).await?;
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_as_azure_and_azurite_write_them() {
        let c = ConnectionString::parse(&format!(
            "DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};\
             BlobEndpoint=http://127.0.0.1:10000/{DEV_ACCOUNT}/;"
        ))
        .unwrap();
        assert_eq!(c.account.as_deref(), Some(DEV_ACCOUNT));
        assert_eq!(c.key.as_deref(), Some(DEV_KEY));
        assert_eq!(
            c.blob_endpoint.as_deref(),
            Some("http://127.0.0.1:10000/devstoreaccount1")
        );
        let c = ConnectionString::parse(
            "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=a2V5;EndpointSuffix=core.windows.net",
        )
        .unwrap();
        assert_eq!(
            c.blob_endpoint.as_deref(),
            Some("https://acme.blob.core.windows.net")
        );
        let dev = ConnectionString::parse("UseDevelopmentStorage=true").unwrap();
        assert_eq!(dev.key.as_deref(), Some(DEV_KEY));
        for bad in ["AccountKey=a2V5", "AccountName"] {
            assert!(ConnectionString::parse(bad).is_err(), "{bad}");
        }
    }
}
