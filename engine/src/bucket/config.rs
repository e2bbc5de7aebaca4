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

    /// Builds the client. Network providers use rustls with the ring provider, installed here
    /// once for the process.
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
                install_crypto();
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
            Provider::Gcs => {
                install_crypto();
                let mut b = object_store::gcp::GoogleCloudStorageBuilder::new()
                    .with_bucket_name(self.need("bucket")?);
                if let Some(sa) = self.str_key("service_account") {
                    b = b.with_service_account_key(sa);
                }
                Arc::new(b.build().map_err(build_err)?)
            }
            Provider::Azure => {
                install_crypto();
                let mut b = object_store::azure::MicrosoftAzureBuilder::new()
                    .with_account(self.need("storage_account")?)
                    .with_container_name(self.need("container")?);
                if let Some(k) = self.str_key("storage_account_key") {
                    b = b.with_access_key(k);
                }
                if let Some(ep) = self.str_key("endpoint") {
                    let account = self.need("storage_account")?;
                    b = b.with_endpoint(format!("https://{account}.{ep}"));
                }
                Arc::new(b.build().map_err(build_err)?)
            }
        };
        let prefix = self.prefix.trim_matches('/');
        if prefix.is_empty() {
            Ok(store)
        } else {
            Ok(Arc::new(PrefixStore::new(store, prefix)))
        }
    }
}

/// reqwest is built without a default TLS provider (to avoid a C build); pick ring once.
fn install_crypto() {
    // Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_thanos_keys() {
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
    fn rejects_bad_configs_with_reasons() {
        for (y, want) in [
            ("type: FTP\n", "unknown variant"),
            ("type: FILESYSTEM\n", "directory"),
            ("type: S3\nconfig: {}\n", "bucket"),
            (": :\n", ""),
        ] {
            let e = BucketConfig::parse(y).and_then(|c| c.build().map(|_| ()));
            let msg = e.unwrap_err().to_string();
            assert!(msg.contains(want), "{y:?}: {msg}");
        }
    }
}
