//! The watched tree: which files count, and a content hash of each.
//!
//! A file counts unless a built-in ignore (`.git/`, the state dir,
//! `target/`, `node_modules/`, editor swap and backup files), a
//! `.gitignore`/`.ignore` file or `[watch] ignore` excludes it. Hashes are
//! cached by size, modification time and inode, so a re-check reads only the
//! files whose metadata moved; touching a file re-hashes it and finds the
//! same content.
//!
//! Plugins' component files count too, even where an ignore would exclude
//! them (a plugin built into `target/`) or outside the project: they are
//! named in `runner.toml`. Outside the project their key is their absolute
//! path. So do the files under a directory granted to a plugin outside the
//! project (keys absolute too), with the built-in ignores and that
//! directory's own `.gitignore`/`.ignore` files applied.

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Paths ignored everywhere, in gitignore syntax.
pub const BUILTIN_IGNORES: &[&str] = &[
    ".git/",
    "target/",
    "node_modules/",
    ".*.swp",
    ".*.swx",
    "*~",
    // A leading `#` starts a comment in gitignore syntax.
    "\\#*#",
    ".#*",
    "4913",
];

/// Every counted file (relative to the project) and its content hash.
pub type Snapshot = BTreeMap<PathBuf, [u8; 32]>;

/// What says a cached hash is still right: size, mtime in ns, inode.
type Stamp = (u64, i128, u64);

pub struct Tree {
    root: PathBuf,
    ignores: Arc<Gitignore>,
    /// The last hash of each file, by relative path, with its stamp.
    cache: HashMap<PathBuf, (Stamp, [u8; 32])>,
    /// Files counted whatever the ignores say (absolute paths).
    files: Vec<PathBuf>,
    /// Directories outside the root whose files count (absolute paths),
    /// each with the built-in ignores rooted there.
    dirs: Vec<(PathBuf, Arc<Gitignore>)>,
}

/// The built-in ignores rooted at `root`.
fn builtin_ignores_at(root: &Path) -> Result<Gitignore, String> {
    let mut builder = GitignoreBuilder::new(root);
    for pattern in BUILTIN_IGNORES {
        builder
            .add_line(None, pattern)
            .map_err(|err| format!("ignore pattern `{pattern}`: {err}"))?;
    }
    builder.build().map_err(|err| err.to_string())
}

impl Tree {
    /// `extra` are `[watch] ignore` patterns; `state_dir` is ignored when it
    /// lies inside `root`.
    pub fn new(root: &Path, state_dir: &Path, extra: &[String]) -> Result<Self, String> {
        let mut builder = GitignoreBuilder::new(root);
        for pattern in BUILTIN_IGNORES.iter().copied().map(str::to_string).chain(
            state_dir
                .strip_prefix(root)
                .ok()
                .filter(|rel| !rel.as_os_str().is_empty())
                .map(|rel| format!("/{}/", rel.display())),
        ) {
            builder
                .add_line(None, &pattern)
                .map_err(|err| format!("ignore pattern `{pattern}`: {err}"))?;
        }
        for pattern in extra {
            builder
                .add_line(None, pattern)
                .map_err(|err| format!("[watch] ignore `{pattern}`: {err}"))?;
        }
        let ignores = builder.build().map_err(|err| err.to_string())?;
        Ok(Self {
            root: root.to_path_buf(),
            ignores: Arc::new(ignores),
            cache: HashMap::new(),
            files: Vec::new(),
            dirs: Vec::new(),
        })
    }

    /// Also counts the files under `dirs` (absolute paths), the ones
    /// outside the root; those inside are walked with the rest.
    pub fn with_dirs(mut self, dirs: Vec<PathBuf>) -> Result<Self, String> {
        for dir in dirs {
            if dir.starts_with(&self.root) || self.dirs.iter().any(|(d, _)| dir.starts_with(d)) {
                continue;
            }
            let ignores = builtin_ignores_at(&dir)?;
            self.dirs.push((dir, Arc::new(ignores)));
        }
        Ok(self)
    }

    /// The outside directories counted by [`Tree::with_dirs`].
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|(dir, _)| dir.clone()).collect()
    }

    /// The outside counted directory holding `path`, with its ignores.
    fn outside_dir(&self, path: &Path) -> Option<(&Path, &Gitignore)> {
        self.dirs
            .iter()
            .find(|(dir, _)| path.starts_with(dir))
            .map(|(dir, ignores)| (dir.as_path(), ignores.as_ref()))
    }

    /// Also counts `files` (absolute paths), ignored or outside the root.
    pub fn with_files(mut self, files: Vec<PathBuf>) -> Self {
        self.files = files;
        self
    }

    /// The files counted whatever the ignores say.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// How an event's `path` is named in a [`Snapshot`]: relative to the
    /// root, or absolute for a counted file outside it (`None`: outside
    /// and not counted).
    pub fn key(&self, path: &Path) -> Option<PathBuf> {
        match path.strip_prefix(&self.root) {
            Ok(rel) => Some(rel.to_path_buf()),
            Err(_) if self.files.iter().any(|f| f == path) => Some(path.to_path_buf()),
            Err(_) if self.outside_dir(path).is_some() => Some(path.to_path_buf()),
            Err(_) => None,
        }
    }

    /// Whether an event's `path` is outside the tree or built-in/`[watch]`
    /// ignored (`.gitignore` is applied by [`Tree::snapshot`]).
    pub fn ignores_event(&self, path: &Path) -> bool {
        if self.files.iter().any(|f| f == path) {
            return false;
        }
        if let Some((dir, ignores)) = self.outside_dir(path) {
            let rel = path.strip_prefix(dir).expect("under its directory");
            return !rel.as_os_str().is_empty()
                && ignores
                    .matched_path_or_any_parents(rel, path.is_dir())
                    .is_ignore();
        }
        let Ok(rel) = path.strip_prefix(&self.root) else {
            return true;
        };
        if rel.as_os_str().is_empty() {
            return false;
        }
        let is_dir = path.is_dir();
        self.ignores
            .matched_path_or_any_parents(rel, is_dir)
            .is_ignore()
    }

    /// Walks the tree and hashes what changed since the last walk. Files
    /// that cannot be read are left out (and so count as removed).
    pub fn snapshot(&mut self) -> Snapshot {
        let walk = walker(&self.root, self.ignores.clone()).build();
        let mut snapshot = Snapshot::new();
        let mut cache = HashMap::with_capacity(self.cache.len());
        for entry in walk.flatten() {
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let Ok(rel) = entry.path().strip_prefix(&self.root) else {
                continue;
            };
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            self.count(
                entry.path(),
                rel.to_path_buf(),
                &meta,
                &mut cache,
                &mut snapshot,
            );
        }
        for (dir, ignores) in self.dirs.clone() {
            for entry in walker(&dir, ignores).build().flatten() {
                if !entry.file_type().is_some_and(|t| t.is_file()) {
                    continue;
                }
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                let path = entry.path().to_path_buf();
                self.count(&path, path.clone(), &meta, &mut cache, &mut snapshot);
            }
        }
        for file in self.files.clone() {
            let key = self.key(&file).expect("a counted file has a key");
            if snapshot.contains_key(&key) {
                continue;
            }
            if let Ok(meta) = std::fs::metadata(&file)
                && meta.is_file()
            {
                self.count(&file, key, &meta, &mut cache, &mut snapshot);
            }
        }
        self.cache = cache;
        snapshot
    }

    /// Adds `path`'s hash as `key`, read again only when its stamp moved.
    fn count(
        &self,
        path: &Path,
        key: PathBuf,
        meta: &std::fs::Metadata,
        cache: &mut HashMap<PathBuf, (Stamp, [u8; 32])>,
        snapshot: &mut Snapshot,
    ) {
        let stamp = (
            meta.len(),
            i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            meta.ino(),
        );
        let hash = match self.cache.get(&key) {
            Some((cached, hash)) if *cached == stamp => *hash,
            _ => match hash_file(path) {
                Ok(hash) => hash,
                Err(_) => return,
            },
        };
        cache.insert(key.clone(), (stamp, hash));
        snapshot.insert(key, hash);
    }
}

/// A walk of `root` honouring `.gitignore`/`.ignore` files and `ignores`.
fn walker(root: &Path, ignores: Arc<Gitignore>) -> ignore::WalkBuilder {
    let mut walk = ignore::WalkBuilder::new(root);
    let root = root.to_path_buf();
    walk.hidden(false)
        .git_ignore(true)
        .git_exclude(true)
        .git_global(false)
        .ignore(true)
        .parents(false)
        .require_git(false)
        .filter_entry(move |entry| {
            let Ok(rel) = entry.path().strip_prefix(&root) else {
                return false;
            };
            rel.as_os_str().is_empty()
                || !ignores
                    .matched(rel, entry.file_type().is_some_and(|t| t.is_dir()))
                    .is_ignore()
        });
    walk
}

pub fn hash_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = [0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher.finalize().into())
}

/// Files added, removed or with other content, sorted.
pub fn changed(old: &Snapshot, new: &Snapshot) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = new
        .iter()
        .filter(|(path, hash)| old.get(*path) != Some(hash))
        .map(|(path, _)| path.clone())
        .chain(old.keys().filter(|p| !new.contains_key(*p)).cloned())
        .collect();
    paths.sort();
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignores_swap_files_state_dir_and_gitignored_files_but_not_sources() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for file in [
            "src/a.rs",
            "src/.a.rs.swp",
            "src/a.rs~",
            "#a#",
            ".#a",
            "4913",
            "target/x",
            ".runner/history.db",
            "dist/out.js",
            "notes.log",
        ] {
            std::fs::create_dir_all(root.join(file).parent().unwrap()).unwrap();
            std::fs::write(root.join(file), file).unwrap();
        }
        std::fs::write(root.join(".gitignore"), "dist/\n").unwrap();
        let mut tree = Tree::new(root, &root.join(".runner"), &["*.log".into()]).unwrap();
        let files: Vec<PathBuf> = tree.snapshot().into_keys().collect();
        assert_eq!(
            files,
            vec![PathBuf::from(".gitignore"), PathBuf::from("src/a.rs")]
        );
        assert!(tree.ignores_event(&root.join("src/.a.rs.swp")));
        assert!(tree.ignores_event(&root.join(".runner/history.db")));
        assert!(!tree.ignores_event(&root.join("src/a.rs")));
    }

    #[test]
    fn named_files_count_even_when_ignored_or_outside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = dir.path();
        let built = root.join("target/wasm/p.wasm");
        let elsewhere = outside.path().join("q.wasm");
        for file in [&built, &elsewhere] {
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, "component").unwrap();
        }
        std::fs::write(root.join("target/wasm/other.wasm"), "not named").unwrap();
        let mut tree = Tree::new(root, &root.join(".runner"), &[])
            .unwrap()
            .with_files(vec![built.clone(), elsewhere.clone()]);
        let files: Vec<PathBuf> = tree.snapshot().into_keys().collect();
        assert_eq!(
            files,
            vec![elsewhere.clone(), PathBuf::from("target/wasm/p.wasm")]
        );
        assert!(!tree.ignores_event(&built));
        assert!(!tree.ignores_event(&elsewhere));
        assert!(tree.ignores_event(&root.join("target/wasm/other.wasm")));
        assert!(tree.ignores_event(&outside.path().join("other.wasm")));
        assert_eq!(tree.key(&elsewhere), Some(elsewhere.clone()));
        assert_eq!(tree.key(&outside.path().join("other.wasm")), None);
    }

    #[test]
    fn a_touched_file_with_the_same_content_is_not_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.txt");
        std::fs::write(&file, "one").unwrap();
        let mut tree = Tree::new(dir.path(), &dir.path().join(".runner"), &[]).unwrap();
        let before = tree.snapshot();
        std::fs::write(&file, "one").unwrap();
        assert!(changed(&before, &tree.snapshot()).is_empty());
        std::fs::write(&file, "two").unwrap();
        assert_eq!(
            changed(&before, &tree.snapshot()),
            vec![PathBuf::from("a.txt")]
        );
    }
}
