//! The in-process source of `gauntlet all`: the blocks of a local directory, re-opened when the
//! set of block directories changes, read without a gRPC hop.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use gauntlet_engine::Result;
use gauntlet_engine::block::block_dirs;
use gauntlet_engine::labels::{MatchType, Matcher};
use gauntlet_engine::query::{LocalBlocks, Queryable, SelectHints, Series};

use super::{ReadOptions, ReadView, Source};

/// The blocks under one directory (a filesystem bucket or a Prometheus data dir).
#[derive(Debug)]
pub struct LocalSource {
    dir: PathBuf,
    cache: Mutex<Option<(Vec<PathBuf>, Arc<LocalBlocks>)>>,
}

impl LocalSource {
    /// A source over `dir`, which must exist; blocks are opened on first use.
    pub fn new(dir: &Path) -> Self {
        LocalSource {
            dir: dir.to_path_buf(),
            cache: Mutex::new(None),
        }
    }

    /// The blocks as they are now: re-opened only when block directories came or went.
    pub fn blocks(&self) -> Result<Arc<LocalBlocks>> {
        let dirs = block_dirs(&self.dir)?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((known, blocks)) = cache.as_ref()
            && *known == dirs
        {
            return Ok(blocks.clone());
        }
        let blocks = Arc::new(LocalBlocks::open(&self.dir)?);
        *cache = Some((dirs, blocks.clone()));
        Ok(blocks)
    }
}

impl Source for LocalSource {
    fn view(&self, _opts: &ReadOptions) -> Result<Arc<dyn ReadView>> {
        Ok(Arc::new(LocalView(self.blocks()?)))
    }
}

/// One request's view of the local blocks; local reads have no partial failures to report.
#[derive(Debug)]
struct LocalView(Arc<LocalBlocks>);

impl Queryable for LocalView {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<Vec<Series>> {
        self.0.select(matchers, mint, maxt, hints)
    }

    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>> {
        let all = all_series();
        self.0.label_names(or_all(matchers, &all), mint, maxt)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        let all = all_series();
        self.0
            .label_values(name, or_all(matchers, &all), mint, maxt)
    }
}

/// A matcher every series satisfies: block postings lookups select nothing for an empty
/// matcher list, while the label endpoints mean "every series" by it.
fn all_series() -> [Matcher; 1] {
    [Matcher::new(MatchType::NotEqual, "__name__", "").expect("plain matcher")]
}

fn or_all<'a>(matchers: &'a [Matcher], all: &'a [Matcher]) -> &'a [Matcher] {
    if matchers.is_empty() { all } else { matchers }
}

impl ReadView for LocalView {
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}
