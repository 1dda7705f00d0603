//! Plugins for workers, addressed by the SHA-256 of their bytes.
//!
//! `plugins` holds each component once, under its hash; `run_plugins` is
//! what a run declared when its tasks were enqueued. A worker asks for a
//! plugin by run and hash ([`Queue::plugin_for`]), and the database hands
//! the bytes over only when that run declared that hash: a task cannot run
//! a plugin its run did not name, whatever its payload says.

use super::{Queue, QueueError};
use crate::hash::sha256_hex;

/// Why the queue would not hand a plugin over.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error(
        "run `{run}` did not declare plugin `{name}` (sha256 {sha256}): a run's tasks may only use the plugins declared for it when they were enqueued"
    )]
    Undeclared {
        run: String,
        name: String,
        sha256: String,
    },
    #[error(
        "the queue holds no plugin with sha256 {sha256} (asked for by run `{run}`); upload it first (`runner queue enqueue --plugin FILE`)"
    )]
    Unknown { run: String, sha256: String },
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// A plugin as the queue knows it, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPlugin {
    pub name: String,
    pub sha256: String,
    pub size: i64,
}

impl Queue {
    /// Stores a component under the hash of its bytes (computed here) and
    /// returns that hash. Storing the same bytes again changes nothing.
    pub async fn put_plugin(&self, name: &str, bytes: &[u8]) -> Result<String, QueueError> {
        let sha256 = sha256_hex(bytes);
        self.client
            .execute(
                "INSERT INTO plugins (sha256, name, size, bytes) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (sha256) DO NOTHING",
                &[&sha256, &name, &(bytes.len() as i64), &bytes],
            )
            .await?;
        Ok(sha256)
    }

    /// Declares the plugins `run`'s tasks may use. Declaring one twice
    /// changes nothing; a hash the queue does not hold is refused.
    pub async fn declare_run(&self, run: &str, sha256s: &[String]) -> Result<(), PluginError> {
        let missing = self
            .client
            .query(
                "SELECT s FROM unnest($1::text[]) s
                 WHERE NOT EXISTS (SELECT 1 FROM plugins p WHERE p.sha256 = s)",
                &[&sha256s],
            )
            .await
            .map_err(QueueError::from)?;
        if let Some(row) = missing.first() {
            return Err(PluginError::Unknown {
                run: run.to_string(),
                sha256: row.get(0),
            });
        }
        self.client
            .execute(
                "INSERT INTO run_plugins (run, sha256) SELECT $1, unnest($2::text[])
                 ON CONFLICT DO NOTHING",
                &[&run, &sha256s],
            )
            .await
            .map_err(QueueError::from)?;
        Ok(())
    }

    /// The name and size of `sha256` when `run` declared it (its bytes are
    /// not sent: a worker with the file cached checks only this).
    pub async fn declared_plugin(
        &self,
        run: &str,
        sha256: &str,
    ) -> Result<StoredPlugin, PluginError> {
        let (plugin, _) = self.lookup(run, sha256, false).await?;
        Ok(plugin)
    }

    /// The bytes of `sha256`, only when `run` declared it: the check is in
    /// the query, so undeclared bytes never leave the database.
    pub async fn plugin_for(&self, run: &str, sha256: &str) -> Result<Vec<u8>, PluginError> {
        let (_, bytes) = self.lookup(run, sha256, true).await?;
        Ok(bytes.unwrap_or_default())
    }

    async fn lookup(
        &self,
        run: &str,
        sha256: &str,
        with_bytes: bool,
    ) -> Result<(StoredPlugin, Option<Vec<u8>>), PluginError> {
        let row = self
            .client
            .query_opt(
                "SELECT p.name, p.size, r.run IS NOT NULL,
                        CASE WHEN r.run IS NOT NULL AND $3 THEN p.bytes END
                 FROM plugins p
                 LEFT JOIN run_plugins r ON r.sha256 = p.sha256 AND r.run = $1
                 WHERE p.sha256 = $2",
                &[&run, &sha256, &with_bytes],
            )
            .await
            .map_err(QueueError::from)?;
        let Some(row) = row else {
            return Err(PluginError::Unknown {
                run: run.to_string(),
                sha256: sha256.to_string(),
            });
        };
        let name: String = row.get(0);
        if !row.get::<_, bool>(2) {
            return Err(PluginError::Undeclared {
                run: run.to_string(),
                name,
                sha256: sha256.to_string(),
            });
        }
        let plugin = StoredPlugin {
            name,
            sha256: sha256.to_string(),
            size: row.get(1),
        };
        Ok((plugin, row.get(3)))
    }
}
