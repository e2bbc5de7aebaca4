//! Thanos's objstore configuration (`--objstore.config-file`): a YAML document with `type:` and
//! `config:`, keys named as Thanos names them, turned into an `object_store` client.

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::prefix::PrefixStore;
use serde::Deserialize;

use super::BucketError;

/// The provider named by `type:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Provider {
    /// A local directory (`config.directory`).
    Filesystem,
    /// Amazon S3 or any S3-compatible server.
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage.
    Azure,
}

/// A parsed objstore configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct BucketConfig {
    /// The provider.
    #[serde(rename = "type")]
    pub provider: Provider,
    /// Provider keys (`directory`, `bucket`, `endpoint`, ...), as strings, numbers or booleans.
    #[serde(default)]
    pub config: BTreeMap<String, serde_yaml::Value>,
    /// Objects live under this prefix of the bucket (Thanos's top-level `prefix:`).
    #[serde(default)]
    pub prefix: String,
}

impl BucketConfig {
    /// Parses the YAML text of an objstore config file.
    pub fn parse(yaml: &str) -> Result<Self, BucketError> {
        let cfg: BucketConfig = serde_yaml::from_str(yaml).map_err(|e| BucketError::Config {
            reason: e.to_string(),
        })?;
        if cfg.provider == Provider::Filesystem && cfg.str_key("directory").is_none() {
            return Err(BucketError::Config {
                reason: "FILESYSTEM needs config.directory".into(),
            });
        }
        Ok(cfg)
    }

    /// A FILESYSTEM bucket over `dir`, as a config file naming it would give; the path must be
    /// UTF-8, as in a config file.
    pub fn filesystem(dir: &std::path::Path) -> Result<Self, BucketError> {
        let dir = dir.to_str().ok_or_else(|| BucketError::Config {
            reason: format!("the directory {} is not UTF-8", dir.display()),
        })?;
        Ok(BucketConfig {
            provider: Provider::Filesystem,
            config: BTreeMap::from([("directory".to_string(), dir.into())]),
            prefix: String::new(),
        })
    }

    /// A human-readable name for logs: provider and bucket or directory.
    pub fn describe(&self) -> String {
        let what = match self.provider {
            Provider::Filesystem => self.str_key("directory"),
            Provider::S3 | Provider::Gcs => self.str_key("bucket"),
            Provider::Azure => self.str_key("container"),
        };
        format!("{:?}:{}", self.provider, what.unwrap_or_default())
    }

    /// The directory of a FILESYSTEM bucket (with its prefix), if this is one.
    pub fn root_dir(&self) -> Option<std::path::PathBuf> {
        if self.provider != Provider::Filesystem {
            return None;
        }
        let dir = std::path::PathBuf::from(self.str_key("directory")?);
        let prefix = self.prefix.trim_matches('/');
        Some(if prefix.is_empty() {
            dir
        } else {
            dir.join(prefix)
        })
    }

    fn str_key(&self, key: &str) -> Option<String> {
        match self.config.get(key)? {
            serde_yaml::Value::String(s) if !s.is_empty() => Some(s.clone()),
            serde_yaml::Value::Number(n) => Some(n.to_string()),
            serde_yaml::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    fn bool_key(&self, key: &str) -> bool {
        matches!(self.config.get(key), Some(serde_yaml::Value::Bool(true)))
            || self.str_key(key).as_deref() == Some("true")
    }

    fn need(&self, key: &str) -> Result<String, BucketError> {
        self.str_key(key).ok_or_else(|| BucketError::Config {
            reason: format!("{:?} needs config.{key}", self.provider),
        })
    }

    /// Builds the client. Network providers (S3, GCS, Azure) speak TLS through object_store's
    /// reqwest client, which takes rustls's process-wide crypto provider: object_store builds
    /// that client from its own options and has no way to be handed a provider, so the
    /// program installs one at its start (the `gauntlet` binary installs ring in `main`).
    pub fn build(&self) -> Result<Arc<dyn ObjectStore>, BucketError> {
        let build_err = |e: object_store::Error| BucketError::Config {
            reason: e.to_string(),
        };
        let store: Arc<dyn ObjectStore> = match self.provider {
            Provider::Filesystem => {
                let dir = self.need("directory")?;
                std::fs::create_dir_all(&dir).map_err(|e| BucketError::Config {
                    reason: format!("directory {dir}: {e}"),
                })?;
                Arc::new(
                    object_store::local::LocalFileSystem::new_with_prefix(&dir)
                        .map_err(build_err)?,
                )
            }
            Provider::S3 => {
                let mut b = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(self.need("bucket")?)
                    .with_region(self.str_key("region").unwrap_or_else(|| "us-east-1".into()));
                if let Some(ep) = self.str_key("endpoint") {
                    // Thanos takes `host:port` and picks the scheme from `insecure`.
                    let insecure = self.bool_key("insecure");
                    let url = if ep.contains("://") {
                        ep
                    } else if insecure {
                        format!("http://{ep}")
                    } else {
                        format!("https://{ep}")
                    };
                    b = b.with_endpoint(url).with_allow_http(insecure);
                }
                if let Some(k) = self.str_key("access_key") {
                    b = b.with_access_key_id(k);
                }
                if let Some(k) = self.str_key("secret_key") {
                    b = b.with_secret_access_key(k);
                }
                if let Some(k) = self.str_key("session_token") {
                    b = b.with_token(k);
                }
                if self.str_key("bucket_lookup_type").as_deref() == Some("virtual-hosted") {
                    b = b.with_virtual_hosted_style_request(true);
                }
                Arc::new(b.build().map_err(build_err)?)
            }
            Provider::Gcs => Arc::new(self.gcs(std::env::var("STORAGE_EMULATOR_HOST").ok())?),
            Provider::Azure => self.azure()?,
        };
        let prefix = self.prefix.trim_matches('/');
        if prefix.is_empty() {
            Ok(store)
        } else {
            Ok(Arc::new(PrefixStore::new(store, prefix)))
        }
    }
}

impl BucketConfig {
    /// Google Cloud Storage: `bucket`, and `service_account` (a service account's JSON key)
    /// or Google's default credentials. `emulator` is `STORAGE_EMULATOR_HOST`, which Google's
    /// own clients honour: requests go there, unsigned. A service account key may also carry
    /// `gcs_base_url` (and `disable_oauth: true`) to name another server.
    fn gcs(
        &self,
        emulator: Option<String>,
    ) -> Result<object_store::gcp::GoogleCloudStorage, BucketError> {
        let mut b = object_store::gcp::GoogleCloudStorageBuilder::new()
            .with_bucket_name(self.need("bucket")?);
        let mut base_url = None;
        if let Some(sa) = self.str_key("service_account") {
            let key: serde_json::Value =
                serde_json::from_str(&sa).map_err(|e| BucketError::Config {
                    reason: format!("GCS service_account is not JSON: {e}"),
                })?;
            base_url = key["gcs_base_url"].as_str().map(str::to_string);
            b = b.with_service_account_key(sa);
        }
        if let Some(host) = emulator.filter(|h| !h.trim().is_empty()) {
            let host = host.trim().trim_end_matches('/');
            let url = if host.contains("://") {
                host.to_string()
            } else {
                format!("http://{host}")
            };
            // Static empty credentials: no token is fetched (from Google's metadata server
            // or anywhere else) and no request is signed.
            let token = object_store::gcp::GcpCredential {
                bearer: String::new(),
            };
            let signer = object_store::gcp::GcpSigningCredential {
                email: String::new(),
                private_key: None,
            };
            b = b
                .with_base_url(&url)
                .with_skip_signature(true)
                .with_credentials(Arc::new(object_store::StaticCredentialProvider::new(token)))
                .with_signing_credentials(Arc::new(object_store::StaticCredentialProvider::new(
                    signer,
                )));
            base_url = Some(url);
        }
        if base_url.is_some_and(|u| u.starts_with("http://")) {
            b = b.with_client_options(object_store::ClientOptions::new().with_allow_http(true));
        }
        b.build().map_err(|e| BucketError::Config {
            reason: format!("GCS: {e}"),
        })
    }

    /// Azure Blob Storage: `storage_account` with `storage_account_key` (or Azure AD's
    /// `az_tenant_id`/`client_id`/`client_secret`, or a managed identity's
    /// `user_assigned_id`), or a `storage_connection_string`; `container`; `endpoint` (the
    /// domain after the account, `blob.core.windows.net` unless set, or a whole URL such as
    /// an emulator's `http://127.0.0.1:10000/devstoreaccount1`). The container is created on
    /// first use unless `storage_create_container: false` (needs the account key).
    fn azure(&self) -> Result<Arc<dyn ObjectStore>, BucketError> {
        let bad = |reason: String| BucketError::Config { reason };
        let conn = match self.str_key("storage_connection_string") {
            Some(s) => {
                if self.str_key("storage_account_key").is_some() {
                    return Err(bad(
                        "AZURE: storage_account_key and storage_connection_string cannot both be \
                         set"
                        .into(),
                    ));
                }
                Some(
                    super::azure::ConnectionString::parse(&s)
                        .map_err(|e| bad(format!("AZURE: {e}")))?,
                )
            }
            None => None,
        };
        let account = match (&conn, self.str_key("storage_account")) {
            (_, Some(a)) => a,
            (Some(c), None) => c.account.clone().unwrap_or_default(),
            (None, None) => return Err(bad("Azure needs config.storage_account".into())),
        };
        let container = self.need("container")?;
        let key = self
            .str_key("storage_account_key")
            .or_else(|| conn.as_ref().and_then(|c| c.key.clone()));
        let account_url = match (
            conn.as_ref().and_then(|c| c.blob_endpoint.clone()),
            self.str_key("endpoint"),
        ) {
            (Some(url), _) => url,
            (None, Some(ep)) if ep.contains("://") => ep.trim_end_matches('/').to_string(),
            (None, ep) => format!(
                "https://{account}.{}",
                ep.unwrap_or_else(|| "blob.core.windows.net".into())
            ),
        };
        let allow_http = account_url.starts_with("http://");
        let mut b = object_store::azure::MicrosoftAzureBuilder::new()
            .with_account(&account)
            .with_container_name(&container)
            .with_endpoint(account_url.clone())
            .with_allow_http(allow_http);
        if let Some(k) = &key {
            b = b.with_access_key(k);
        } else if let Some(sas) = conn.as_ref().and_then(|c| c.sas.clone()) {
            let pairs = object_store::azure::split_sas(&sas)
                .map_err(|e| bad(format!("AZURE: SharedAccessSignature: {e}")))?;
            b = b.with_sas_authorization(pairs);
        } else {
            let (tenant, client, secret) = (
                self.str_key("az_tenant_id"),
                self.str_key("client_id"),
                self.str_key("client_secret"),
            );
            match (tenant, client, secret) {
                (Some(t), Some(c), Some(s)) => {
                    b = b.with_tenant_id(t).with_client_id(c).with_client_secret(s);
                }
                (None, None, None) => {
                    if let Some(id) = self.str_key("user_assigned_id") {
                        b = b.with_client_id(id);
                    }
                }
                _ => {
                    return Err(bad(
                        "AZURE: az_tenant_id, client_id and client_secret must be set together"
                            .into(),
                    ));
                }
            }
        }
        let store = b.build().map_err(|e| bad(format!("AZURE: {e}")))?;
        let create = self.str_key("storage_create_container").as_deref() != Some("false");
        Ok(match key {
            Some(key) if create => Arc::new(super::azure::CreatingContainer::new(
                store,
                super::azure::ContainerSpec {
                    account_url,
                    container,
                    account,
                    key,
                    allow_http,
                },
            )),
            _ => Arc::new(store),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The binary installs ring as rustls's provider at start (object_store's clients need a
    /// process default); a test that builds a client does the same.
    fn install_crypto() {
        // Err: another test of this process installed it first.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }

    #[test]
    fn parses_thanos_keys() {
        install_crypto();
        let c = BucketConfig::parse(
            "type: S3\nconfig:\n  bucket: b\n  endpoint: 127.0.0.1:9000\n  access_key: a\n  secret_key: s\n  insecure: true\nprefix: tenant/a\n",
        )
        .unwrap();
        assert_eq!(c.provider, Provider::S3);
        assert_eq!(c.str_key("bucket").as_deref(), Some("b"));
        assert!(c.bool_key("insecure"));
        assert_eq!(c.prefix, "tenant/a");
        c.build().unwrap();
        let f = BucketConfig::parse("type: FILESYSTEM\nconfig:\n  directory: /tmp/x\n").unwrap();
        assert_eq!(f.provider, Provider::Filesystem);
        let made = BucketConfig::filesystem(std::path::Path::new("/tmp/x")).unwrap();
        assert_eq!(made.root_dir(), f.root_dir());
        assert_eq!(made.describe(), f.describe());
    }

    #[test]
    fn gcs_and_azure_files_build_clients_without_a_request() {
        install_crypto();
        let gcs = BucketConfig::parse("type: GCS\nconfig:\n  bucket: thanos\n").unwrap();
        assert_eq!(gcs.describe(), "Gcs:thanos");
        // An emulator named by STORAGE_EMULATOR_HOST: no credentials are looked for.
        gcs.gcs(Some("127.0.0.1:4443".into())).unwrap();
        let sa = "type: GCS\nconfig:\n  bucket: b\n  service_account: '{\"private_key\": \"\", \"private_key_id\": \"\", \"client_email\": \"\", \"disable_oauth\": true, \"gcs_base_url\": \"http://127.0.0.1:1\"}'\n";
        BucketConfig::parse(sa).unwrap().build().unwrap();
        let key = super::super::azure::DEV_KEY;
        for yaml in [
            format!(
                "type: AZURE\nconfig:\n  container: c\n  storage_connection_string: \"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;\"\n"
            ),
            format!(
                "type: AZURE\nconfig:\n  storage_account: a\n  storage_account_key: {key}\n  container: c\n  endpoint: http://127.0.0.1:10000/a\n  storage_create_container: false\n"
            ),
            "type: AZURE\nconfig:\n  storage_account: a\n  container: c\n  az_tenant_id: t\n  client_id: i\n  client_secret: s\n".to_string(),
        ] {
            let c = BucketConfig::parse(&yaml).unwrap();
            c.build().unwrap_or_else(|e| panic!("{yaml}: {e}"));
        }
    }

    #[test]
    fn rejects_bad_configs_with_reasons() {
        for (y, want) in [
            ("type: FTP\n", "unknown variant"),
            ("type: FILESYSTEM\n", "directory"),
            ("type: S3\nconfig: {}\n", "bucket"),
            ("type: GCS\nconfig: {}\n", "bucket"),
            (
                "type: GCS\nconfig:\n  bucket: b\n  service_account: x\n",
                "service_account",
            ),
            ("type: AZURE\nconfig:\n  container: c\n", "storage_account"),
            ("type: AZURE\nconfig:\n  storage_account: a\n", "container"),
            (
                "type: AZURE\nconfig:\n  storage_account: a\n  container: c\n  client_id: i\n",
                "together",
            ),
            (
                "type: AZURE\nconfig:\n  container: c\n  storage_connection_string: AccountKey=a2V5\n",
                "AccountName",
            ),
            (": :\n", ""),
        ] {
            let e = BucketConfig::parse(y).and_then(|c| c.build().map(|_| ()));
            let msg = e.unwrap_err().to_string();
            assert!(msg.contains(want), "{y:?}: {msg}");
        }
    }
}
