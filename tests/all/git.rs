//! A branch and a worktree per batch: real repositories in temp dirs.

use git2::{BranchType, Oid, Repository, RepositoryInitOptions, Signature};
use protocol::MergeOutcome;
use runner::git::{GitError, GitSettings, MergeMode, Project, Workspaces};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// A repository on `main` with one commit holding `files`.
struct Repo {
    dir: TempDir,
}

impl Repo {
    fn new(files: &[(&str, &str)]) -> Self {
        let repo = Self::empty();
        for (path, text) in files {
            repo.write(path, text);
        }
        repo.commit_all("initial");
        repo
    }

    fn empty() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut options = RepositoryInitOptions::new();
        options.initial_head("main");
        let repo = Repository::init_opts(dir.path(), &options).unwrap();
        let mut config = repo.config().unwrap();
        config.set_str("user.name", "Test").unwrap();
        config.set_str("user.email", "test@example.com").unwrap();
        std::fs::write(dir.path().join(".gitignore"), ".runner/\n").unwrap();
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join(".runner")
    }

    fn git(&self) -> Repository {
        Repository::open(self.path()).unwrap()
    }

    fn write(&self, path: &str, text: &str) {
        let full = self.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.path().join(path)).unwrap()
    }

    fn commit_all(&self, message: &str) -> Oid {
        let repo = self.git();
        let mut index = repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = Signature::now("Test", "test@example.com").unwrap();
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .unwrap()
    }

    fn head_of(&self, branch: &str) -> Oid {
        self.git()
            .find_branch(branch, BranchType::Local)
            .unwrap()
            .get()
            .target()
            .unwrap()
    }

    /// `path` as committed on `branch`.
    fn file_on(&self, branch: &str, path: &str) -> Option<String> {
        let repo = self.git();
        let tree = repo
            .find_commit(self.head_of(branch))
            .unwrap()
            .tree()
            .unwrap();
        let entry = tree.get_path(Path::new(path)).ok()?;
        let blob = repo.find_blob(entry.id()).unwrap();
        Some(String::from_utf8_lossy(blob.content()).into_owned())
    }

    fn workspaces(&self, settings: &GitSettings) -> Workspaces {
        match Project::open(self.path(), &self.state(), settings)
            .unwrap_or_else(|err| panic!("{err}"))
        {
            Project::Git(workspaces) => workspaces,
            Project::Plain { reason, .. } => panic!("no branches: {reason}"),
        }
    }
}

fn merging(mode: MergeMode) -> GitSettings {
    GitSettings {
        merge: mode,
        target: Some("main".into()),
        ..GitSettings::default()
    }
}

#[test]
fn two_parallel_batches_edit_the_same_file_on_their_own_branches() {
    let repo = Repo::new(&[("shared.txt", "base\n")]);
    let base = repo.head_of("main");
    let workspaces = repo.workspaces(&GitSettings::default());
    assert!(
        workspaces.warnings().is_empty(),
        "{:?}",
        workspaces.warnings()
    );

    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = ["left", "right"]
            .into_iter()
            .map(|batch| {
                let workspaces = &workspaces;
                scope.spawn(move || {
                    let ws = workspaces
                        .prepare("20260101-000000-abcd", batch, &[])
                        .unwrap();
                    assert_eq!(
                        std::fs::read_to_string(ws.dir.join("shared.txt")).unwrap(),
                        "base\n"
                    );
                    std::fs::write(ws.dir.join("shared.txt"), format!("{batch} was here\n"))
                        .unwrap();
                    std::fs::write(ws.dir.join(format!("{batch}.txt")), batch).unwrap();
                    let committed = ws.commit(&format!("The {batch} batch")).unwrap();
                    (ws, committed)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    for (ws, committed) in &results {
        let batch = ws.batch_id.as_str();
        assert_eq!(ws.branch, format!("runner/20260101-000000-abcd-{batch}"));
        assert_eq!(committed.head_before, base.to_string());
        assert_ne!(committed.head_after, committed.head_before);
        assert_eq!(committed.files_changed, 2);
        assert_eq!(
            repo.file_on(&ws.branch, "shared.txt").unwrap(),
            format!("{batch} was here\n")
        );
        assert_eq!(
            repo.file_on(&ws.branch, &format!("{batch}.txt")).unwrap(),
            batch
        );
        let git = repo.git();
        let message = git
            .find_commit(Oid::from_str(&committed.head_after).unwrap())
            .unwrap();
        let message = message.message().unwrap().to_string();
        assert!(
            message.contains("20260101-000000-abcd") && message.contains(batch),
            "{message}"
        );
        workspaces.remove(ws).unwrap();
        assert!(!ws.path.exists());
    }
    assert_eq!(repo.head_of("main"), base, "main is untouched");
    assert_eq!(repo.read("shared.txt"), "base\n");
    assert!(repo.git().worktrees().unwrap().is_empty());
}

#[test]
fn a_batch_that_changes_nothing_makes_no_commit() {
    let repo = Repo::new(&[("a.txt", "a\n")]);
    let workspaces = repo.workspaces(&GitSettings::default());
    let ws = workspaces.prepare("run", "idle", &[]).unwrap();
    let committed = ws.commit("Idle").unwrap();
    assert_eq!(
        (committed.files_changed, committed.head_after.as_str()),
        (0, ws.head_before.as_str())
    );
    workspaces.remove(&ws).unwrap();
}

#[test]
fn merges_a_batch_into_main_then_reports_a_conflict_without_touching_main() {
    let repo = Repo::new(&[("shared.txt", "base\n")]);
    let workspaces = repo.workspaces(&merging(MergeMode::Ff));
    assert_eq!(workspaces.target(), Some("main"));
    let mut done = Vec::new();
    for batch in ["first", "second"] {
        let ws = workspaces.prepare("run", batch, &[]).unwrap();
        std::fs::write(ws.dir.join("shared.txt"), format!("{batch}\n")).unwrap();
        ws.commit(batch).unwrap();
        done.push(ws);
    }

    let merged = workspaces.merge(&done[0]).unwrap();
    assert_eq!(merged.status, MergeOutcome::FastForward, "{merged:?}");
    let first_head = repo.head_of(&done[0].branch);
    assert_eq!(repo.head_of("main"), first_head);
    assert_eq!(merged.commit, Some(first_head.to_string()));
    assert_eq!(
        repo.read("shared.txt"),
        "first\n",
        "the checked-out main follows"
    );

    let conflict = workspaces.merge(&done[1]).unwrap();
    assert_eq!(conflict.status, MergeOutcome::Conflict, "{conflict:?}");
    assert_eq!(conflict.conflicts, vec!["shared.txt".to_string()]);
    assert!(conflict.commit.is_none());
    assert!(conflict.error.as_deref().unwrap().contains("untouched"));
    assert_eq!(repo.head_of("main"), first_head, "main is untouched");
    assert_eq!(repo.read("shared.txt"), "first\n");
    assert_eq!(
        repo.file_on(&done[1].branch, "shared.txt").unwrap(),
        "second\n",
        "the branch keeps its change"
    );
    for ws in &done {
        workspaces.remove(ws).unwrap();
    }
}

#[test]
fn merge_mode_merge_joins_batches_that_edit_different_files_with_merge_commits() {
    let repo = Repo::new(&[("a.txt", "a\n"), ("b.txt", "b\n")]);
    let workspaces = repo.workspaces(&merging(MergeMode::Merge));
    let mut done = Vec::new();
    for (batch, file) in [("one", "a.txt"), ("two", "b.txt")] {
        let ws = workspaces.prepare("run", batch, &[]).unwrap();
        std::fs::write(ws.dir.join(file), format!("{batch}\n")).unwrap();
        ws.commit(batch).unwrap();
        done.push(ws);
    }
    for ws in &done {
        let report = workspaces.merge(ws).unwrap();
        assert_eq!(report.status, MergeOutcome::Merged, "{report:?}");
        let git = repo.git();
        let commit = git.find_commit(repo.head_of("main")).unwrap();
        assert_eq!(commit.parent_count(), 2);
        assert_eq!(Some(commit.id().to_string()), report.commit);
    }
    assert_eq!(
        (repo.read("a.txt"), repo.read("b.txt")),
        ("one\n".into(), "two\n".into())
    );
    let again = workspaces.merge(&done[0]).unwrap();
    assert_eq!(again.status, MergeOutcome::UpToDate);
}

#[test]
fn a_merge_that_would_overwrite_uncommitted_changes_in_main_leaves_it_alone() {
    let repo = Repo::new(&[("a.txt", "a\n")]);
    let base = repo.head_of("main");
    let workspaces = repo.workspaces(&merging(MergeMode::Ff));
    let ws = workspaces.prepare("run", "edit", &[]).unwrap();
    std::fs::write(ws.dir.join("a.txt"), "batch\n").unwrap();
    ws.commit("edit").unwrap();
    repo.write("a.txt", "my local edit\n");

    let report = workspaces.merge(&ws).unwrap();
    assert_eq!(report.status, MergeOutcome::Failed, "{report:?}");
    assert!(
        report
            .error
            .as_deref()
            .unwrap()
            .contains("uncommitted changes"),
        "{report:?}"
    );
    assert_eq!(repo.head_of("main"), base);
    assert_eq!(repo.read("a.txt"), "my local edit\n");
    workspaces.remove(&ws).unwrap();
}

#[test]
fn a_batch_that_depends_on_two_batches_starts_from_both_of_their_heads() {
    let repo = Repo::new(&[("a.txt", "a\n"), ("b.txt", "b\n")]);
    let workspaces = repo.workspaces(&GitSettings::default());
    let mut heads = Vec::new();
    for (batch, file) in [("one", "a.txt"), ("two", "b.txt")] {
        let ws = workspaces.prepare("run", batch, &[]).unwrap();
        std::fs::write(ws.dir.join(file), format!("{batch}\n")).unwrap();
        heads.push(ws.commit(batch).unwrap().head_after);
        workspaces.remove(&ws).unwrap();
    }
    let ws = workspaces.prepare("run", "report", &heads).unwrap();
    assert_eq!(
        std::fs::read_to_string(ws.dir.join("a.txt")).unwrap(),
        "one\n"
    );
    assert_eq!(
        std::fs::read_to_string(ws.dir.join("b.txt")).unwrap(),
        "two\n"
    );
    let git = repo.git();
    let start = git
        .find_commit(Oid::from_str(&ws.head_before).unwrap())
        .unwrap();
    assert_eq!(start.parent_count(), 2);

    let single = workspaces.prepare("run", "after-one", &heads[..1]).unwrap();
    assert_eq!(single.head_before, heads[0]);
    for ws in [ws, single] {
        workspaces.remove(&ws).unwrap();
    }
}

#[test]
fn sweeps_the_worktrees_of_a_dead_runner_and_saves_what_they_held() {
    let repo = Repo::new(&[("a.txt", "a\n")]);
    let workspaces = repo.workspaces(&GitSettings::default());
    let orphan = workspaces.prepare("crashed", "work", &[]).unwrap();
    std::fs::write(orphan.dir.join("unsaved.txt"), "work in progress\n").unwrap();
    let alive = workspaces.prepare("other", "work", &[]).unwrap();

    // The first worktree's runner died; the second one's is alive.
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let mut living = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let owner = |ws: &runner::git::BatchWorkspace| {
        ws.path.parent().unwrap().join(format!(
            "{}.owner",
            ws.path.file_name().unwrap().to_str().unwrap()
        ))
    };
    std::fs::write(
        owner(&orphan),
        format!("{dead_pid}\ncrashed\nwork\n{}\n", orphan.branch),
    )
    .unwrap();
    std::fs::write(
        owner(&alive),
        format!("{}\nother\nwork\n{}\n", living.id(), alive.branch),
    )
    .unwrap();

    let next_start = repo.workspaces(&GitSettings::default());
    // `runner gc --dry-run` lists what would go and touches nothing.
    let preview = next_start.orphans().unwrap();
    assert_eq!(preview.len(), 1, "{preview:?}");
    assert_eq!(preview[0].path, orphan.path);
    assert_eq!(preview[0].branch.as_deref(), Some(orphan.branch.as_str()));
    assert!(orphan.path.join("unsaved.txt").exists() && owner(&orphan).exists());
    let swept = next_start.sweep_orphans().unwrap();
    living.kill().unwrap();
    living.wait().unwrap();

    assert_eq!(swept.len(), 1, "{swept:?}");
    assert_eq!(swept[0].path, orphan.path);
    assert_eq!(swept[0].branch.as_deref(), Some(orphan.branch.as_str()));
    assert!(swept[0].saved.is_some());
    assert!(!orphan.path.exists());
    assert!(alive.path.exists(), "a live runner's worktree stays");
    assert_eq!(
        repo.file_on(&orphan.branch, "unsaved.txt").unwrap(),
        "work in progress\n"
    );
    let names: Vec<String> = repo
        .git()
        .worktrees()
        .unwrap()
        .iter()
        .flatten()
        .map(str::to_string)
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    next_start.remove(&alive).unwrap();
}

#[test]
fn kept_worktrees_stay_and_are_not_swept() {
    let repo = Repo::new(&[("a.txt", "a\n")]);
    let settings = GitSettings {
        keep_worktrees: true,
        ..GitSettings::default()
    };
    let workspaces = repo.workspaces(&settings);
    let ws = workspaces.prepare("run", "keep", &[]).unwrap();
    ws.commit("keep").unwrap();
    workspaces.remove(&ws).unwrap();
    assert!(ws.path.exists());
    assert!(
        repo.workspaces(&settings)
            .sweep_orphans()
            .unwrap()
            .is_empty()
    );
    assert!(ws.path.exists());
}

#[test]
fn a_directory_outside_git_runs_without_branches_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let project = Project::open(
        dir.path(),
        &dir.path().join(".runner"),
        &GitSettings::default(),
    )
    .unwrap();
    match project {
        Project::Plain { reason, dir: at } => {
            assert_eq!(at, dir.path());
            assert!(reason.contains("not in a git repository"), "{reason}");
        }
        Project::Git(_) => panic!("a temp dir is not a repository"),
    }
}

#[test]
fn a_repository_without_commits_runs_without_branches_and_says_so() {
    let repo = Repo::empty();
    let project = Project::open(repo.path(), &repo.state(), &GitSettings::default()).unwrap();
    let Project::Plain { reason, .. } = project else {
        panic!("no commit to branch from")
    };
    assert!(
        reason.contains("no commits yet") && reason.contains("first commit"),
        "{reason}"
    );
}

#[test]
fn a_dirty_working_copy_is_a_warning_naming_what_the_branches_lack() {
    let repo = Repo::new(&[("a.txt", "a\n")]);
    repo.write("a.txt", "changed\n");
    repo.write("new.txt", "new\n");
    std::fs::create_dir_all(repo.state().join("cache")).unwrap();
    let workspaces = repo.workspaces(&GitSettings::default());
    let warning = workspaces.warnings().first().expect("a warning").clone();
    assert!(
        warning.contains("2 uncommitted changes") && warning.contains("a.txt"),
        "{warning}"
    );
    let ws = workspaces.prepare("run", "clean", &[]).unwrap();
    assert_eq!(
        std::fs::read_to_string(ws.dir.join("a.txt")).unwrap(),
        "a\n"
    );
    workspaces.remove(&ws).unwrap();
}

#[test]
fn settings_that_name_missing_branches_are_errors_naming_the_key() {
    let repo = Repo::new(&[("a.txt", "a\n")]);
    let settings = GitSettings {
        base: Some("nope".into()),
        ..GitSettings::default()
    };
    let err = Project::open(repo.path(), &repo.state(), &settings)
        .err()
        .unwrap();
    assert!(matches!(err, GitError::NoBase { .. }));
    assert!(err.to_string().contains("`[git] base = \"nope\"`"), "{err}");

    let settings = GitSettings {
        merge: MergeMode::Ff,
        target: Some("release".into()),
        ..GitSettings::default()
    };
    let err = Project::open(repo.path(), &repo.state(), &settings)
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("no local branch `release`"),
        "{err}"
    );
}

#[test]
fn a_project_in_a_subdirectory_runs_in_the_same_subdirectory_of_the_worktree() {
    let repo = Repo::new(&[("app/runner.toml", "version = 1\n"), ("README", "r\n")]);
    let project = Project::open(
        &repo.path().join("app"),
        &repo.path().join("app/.runner"),
        &GitSettings::default(),
    )
    .unwrap();
    let workspaces = project.workspaces().expect("a repository");
    let ws = workspaces.prepare("run", "sub", &[]).unwrap();
    assert_eq!(ws.dir, ws.path.join("app"));
    assert!(ws.dir.join("runner.toml").exists());
    workspaces.remove(&ws).unwrap();
}

#[test]
fn worktrees_inside_the_working_copy_stay_out_of_its_status() {
    let repo = Repo::new(&[("a.txt", "a\n")]);
    std::fs::remove_file(repo.path().join(".gitignore")).unwrap();
    repo.commit_all("no ignore file");
    let workspaces = repo.workspaces(&GitSettings::default());
    let ws = workspaces.prepare("run", "inside", &[]).unwrap();
    std::fs::write(ws.dir.join("new.txt"), "new\n").unwrap();
    let mut options = git2::StatusOptions::new();
    options.include_untracked(true).recurse_untracked_dirs(true);
    let git = repo.git();
    let statuses = git.statuses(Some(&mut options)).unwrap();
    let dirty: Vec<String> = statuses
        .iter()
        .filter_map(|e| e.path().map(str::to_string))
        .collect();
    assert!(
        dirty.iter().all(|p| !p.contains("worktrees/run-inside")),
        "{dirty:?}"
    );
    workspaces.remove(&ws).unwrap();
}

// ---- The real `runner` binary in a repository -------------------------------

impl Repo {
    /// A repository on `main` whose first commit holds `runner.toml` and
    /// `files`; the state dir is `.runner` inside it (ignored), seeded with
    /// the shared compile cache so built-in plugins need not compile again.
    fn with_runner_toml(toml: &str, files: &[(&str, &str)]) -> Self {
        let mut all = vec![("runner.toml", toml)];
        all.extend_from_slice(files);
        let repo = Self::new(&all);
        let shared = Path::new(&crate::support::shared_state_dir()).join("cache");
        if let Ok(entries) = std::fs::read_dir(&shared) {
            let cache = repo.state().join("cache");
            std::fs::create_dir_all(&cache).unwrap();
            for entry in entries.flatten() {
                let _ = std::fs::copy(entry.path(), cache.join(entry.file_name()));
            }
        }
        repo
    }

    /// `runner ARGS` in the repository: (exit code, stdout, stderr).
    async fn runner(&self, args: &[&str]) -> (i32, String, String) {
        crate::pipelines::run_binary(self.path(), args, &[]).await
    }
}

/// Two batches that write `a.txt`, each merged into `main` when it ends.
const TWO_WRITERS: &str = r#"version = 1
[git]
merge = "ff"
target = "main"

[[pipelines.default.batches]]
id = "left"
[[pipelines.default.batches.tasks]]
id = "l"
type = "exec"
config = { command = "echo left > a.txt" }

[[pipelines.default.batches]]
id = "right"
[[pipelines.default.batches.tasks]]
id = "r"
type = "exec"
config = { command = "echo right > a.txt" }
"#;

/// One batch that writes `a.txt`, merged into `main` when it ends.
const ONE_WRITER: &str = r#"version = 1
[git]
merge = "ff"
target = "main"

[[pipelines.default.batches]]
id = "edit"
[[pipelines.default.batches.tasks]]
id = "write"
type = "exec"
config = { command = "echo batch > a.txt" }
"#;

#[tokio::test]
async fn a_merge_conflict_fails_the_run_with_exit_code_1_and_history_says_so() {
    let repo = Repo::with_runner_toml(TWO_WRITERS, &[("a.txt", "base\n")]);
    let (code, stdout, stderr) = repo.runner(&["run"]).await;
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("merge into main failed: conflict in a.txt"),
        "{stdout}"
    );
    // One batch got in first; the other's work stays on its own branch.
    let main = repo.read("a.txt");
    assert!(main == "left\n" || main == "right\n", "{main}");
    let loser = if main == "left\n" { "right" } else { "left" };
    let branch = repo
        .git()
        .branches(Some(BranchType::Local))
        .unwrap()
        .flatten()
        .filter_map(|(b, _)| b.name().ok().flatten().map(str::to_string))
        .find(|name| name.ends_with(&format!("-{loser}")))
        .expect("the losing batch's branch");
    assert_eq!(
        repo.file_on(&branch, "a.txt").unwrap(),
        format!("{loser}\n")
    );

    let (code, history, _) = repo.runner(&["history"]).await;
    assert_eq!(code, 0);
    let line = history.lines().nth(1).expect("one run");
    assert!(line.contains("failed"), "{history}");
    assert!(
        line.contains("merge into main failed: conflict in a.txt"),
        "{history}"
    );
    let (_, show, _) = repo.runner(&["show", "last"]).await;
    assert!(
        show.contains(&format!("batch {loser} ({loser}) failed · branch {branch}")),
        "the failed batch names its branch: {show}"
    );
}

#[tokio::test]
async fn a_merge_into_a_dirty_main_fails_the_run_with_exit_code_1_and_history_says_so() {
    let repo = Repo::with_runner_toml(ONE_WRITER, &[("a.txt", "base\n")]);
    let base = repo.head_of("main");
    repo.write("a.txt", "my local edit\n");
    let (code, stdout, stderr) = repo.runner(&["run"]).await;
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert_eq!(repo.read("a.txt"), "my local edit\n", "the edit is kept");
    assert_eq!(repo.head_of("main"), base, "main is untouched");

    let (_, history, _) = repo.runner(&["history"]).await;
    let line = history.lines().nth(1).expect("one run");
    assert!(line.contains("failed"), "{history}");
    assert!(line.contains("merge into main failed"), "{history}");
    assert!(line.contains("uncommitted changes"), "{history}");
}

#[tokio::test]
async fn a_clean_fast_forward_completes_the_run_with_exit_code_0() {
    let repo = Repo::with_runner_toml(ONE_WRITER, &[("a.txt", "base\n")]);
    let (code, stdout, stderr) = repo.runner(&["run"]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(repo.read("a.txt"), "batch\n", "main followed the batch");
    assert_eq!(repo.file_on("main", "a.txt").unwrap(), "batch\n");
    let (_, history, _) = repo.runner(&["history"]).await;
    assert!(
        history.lines().nth(1).unwrap().contains("completed"),
        "{history}"
    );
}

/// Runs the `default` pipeline of the repository's `runner.toml` in-process.
async fn run_pipeline(
    repo: &Repo,
) -> (runner::run::RunReport, Vec<std::sync::Arc<protocol::Event>>) {
    crate::support::run_config(&repo.path().join("runner.toml"), "default").await
}

#[tokio::test]
async fn granted_directories_in_the_repository_follow_the_batch_into_its_worktree() {
    let outside = tempfile::tempdir().unwrap();
    let toml = r#"version = 1
[plugins.probe]
path = "{probe}"
capabilities.dirs = [
  { host = "out", guest = "/out", access = "read-write" },
  { host = "cache", guest = "/cache", access = "read-write" },
  { host = "{outside}", guest = "/ext", access = "read-write" },
]
[plugins.template]
builtin = "template"
capabilities.dirs = [{ host = "out", guest = "/out", access = "read-write" }]

[[pipelines.default.batches]]
id = "write"
[[pipelines.default.batches.tasks]]
id = "probe-out"
type = "script"
config = { component = "probe", args = ["write", "/out/probe.txt", "on the branch"] }
[[pipelines.default.batches.tasks]]
id = "probe-cache"
type = "script"
config = { component = "probe", args = ["write", "/cache/c.txt", "ignored by git"] }
[[pipelines.default.batches.tasks]]
id = "probe-ext"
type = "script"
config = { component = "probe", args = ["write", "/ext/outside.txt", "outside the repository"] }
[[pipelines.default.batches.tasks]]
id = "report"
type = "template"
config = { path = "/out/report.md", template = "report of {{run.id}}" }
"#
    .replace("{probe}", &crate::support::plugin("probe"))
    .replace("{outside}", &outside.path().display().to_string());
    let repo = Repo::with_runner_toml(&toml, &[("cache/.keep", "")]);
    repo.write(".gitignore", ".runner/\ncache/\n");
    repo.commit_all("ignore the cache");
    // `out` exists in the working copy only (git tracks no empty directory).
    std::fs::create_dir_all(repo.path().join("out")).unwrap();

    let (report, events) = run_pipeline(&repo).await;
    assert_eq!(
        report.status,
        protocol::RunStatus::Completed,
        "{:?}",
        report.error
    );
    let branch = events
        .iter()
        .find_map(|e| match &e.kind {
            protocol::EventKind::BatchStatus {
                branch: Some(b), ..
            } => Some(b.clone()),
            _ => None,
        })
        .expect("the batch's branch");

    // Inside the repository: on the batch's branch, not in the main checkout.
    assert_eq!(
        repo.file_on(&branch, "out/probe.txt").as_deref(),
        Some("on the branch")
    );
    assert_eq!(
        repo.file_on(&branch, "out/report.md"),
        Some(format!("report of {}", report.run_id))
    );
    assert!(!repo.path().join("out/probe.txt").exists());
    assert!(!repo.path().join("out/report.md").exists());
    // Ignored by git, or outside the repository: the directory as granted.
    assert_eq!(repo.read("cache/c.txt"), "ignored by git");
    assert_eq!(repo.file_on(&branch, "cache/c.txt"), None);
    assert_eq!(
        std::fs::read_to_string(outside.path().join("outside.txt")).unwrap(),
        "outside the repository"
    );
}

// ---- Branch retention --------------------------------------------------------

impl Repo {
    /// Says in the repository's config that `branch` was made at `ms`.
    fn set_created(&self, branch: &str, ms: i64) {
        self.git()
            .config()
            .unwrap()
            .open_level(git2::ConfigLevel::Local)
            .unwrap()
            .set_i64(&format!("branch.{branch}.runnerCreated"), ms)
            .unwrap();
    }

    fn has_branch(&self, branch: &str) -> bool {
        self.git().find_branch(branch, BranchType::Local).is_ok()
    }

    /// The names of the `runner/` branches.
    fn runner_branches(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .git()
            .branches(Some(BranchType::Local))
            .unwrap()
            .flatten()
            .filter_map(|(b, _)| b.name().ok().flatten().map(str::to_string))
            .filter(|n| n.starts_with("runner/"))
            .collect();
        names.sort();
        names
    }
}

/// Prepares batch `batch` of run `run`, changing `changed` files in it,
/// commits and removes the worktree; returns the branch.
fn finished_batch(workspaces: &Workspaces, run: &str, batch: &str, changed: bool) -> String {
    let ws = workspaces.prepare(run, batch, &[]).unwrap();
    if changed {
        std::fs::write(ws.dir.join(format!("{batch}.txt")), run).unwrap();
    }
    ws.commit(batch).unwrap();
    workspaces.remove(&ws).unwrap();
    ws.branch
}

fn keeping(runs: usize) -> GitSettings {
    GitSettings {
        keep_branches: Some(runs),
        ..GitSettings::default()
    }
}

#[test]
fn keeps_the_branches_of_the_newest_runs_and_any_branch_with_unmerged_work() {
    let repo = Repo::new(&[("a.txt", "a\n")]);
    let workspaces = repo.workspaces(&keeping(2));
    let idle_old = finished_batch(&workspaces, "run-1", "idle", false);
    let work_old = finished_batch(&workspaces, "run-1", "work", true);
    let idle_mid = finished_batch(&workspaces, "run-2", "idle", false);
    let newest: Vec<String> = ["run-3", "run-4"]
        .iter()
        .map(|run| finished_batch(&workspaces, run, "idle", false))
        .collect();
    for (branches, ms) in [
        (vec![&idle_old, &work_old], 1_000),
        (vec![&idle_mid], 2_000),
        (vec![&newest[0]], 3_000),
        (vec![&newest[1]], 4_000),
    ] {
        for branch in branches {
            repo.set_created(branch, ms);
        }
    }

    let preview = workspaces.prune_branches(true).unwrap();
    let removed: Vec<&str> = preview.removed.iter().map(|b| b.branch.as_str()).collect();
    let mut expected = vec![idle_old.as_str(), idle_mid.as_str()];
    expected.sort();
    assert_eq!(removed, expected, "{preview:?}");
    assert!(
        preview.removed[0].why.contains("keep_branches = 2"),
        "{preview:?}"
    );
    assert_eq!(preview.kept.len(), 1, "{preview:?}");
    assert_eq!(preview.kept[0].branch, work_old);
    assert!(preview.kept[0].why.contains("main does not"), "{preview:?}");
    assert_eq!(repo.runner_branches().len(), 5, "a dry run deletes nothing");

    let done = workspaces.prune_branches(false).unwrap();
    assert_eq!(done, preview);
    let mut left = vec![work_old.clone(), newest[0].clone(), newest[1].clone()];
    left.sort();
    assert_eq!(repo.runner_branches(), left);
    assert!(
        repo.git()
            .config()
            .unwrap()
            .snapshot()
            .unwrap()
            .get_string(&format!("branch.{idle_old}.runnerRun"))
            .is_err(),
        "the branch's records went with it"
    );

    let settings = GitSettings {
        prune_unmerged: true,
        ..keeping(2)
    };
    let pruned = repo.workspaces(&settings).prune_branches(false).unwrap();
    assert_eq!(pruned.removed.len(), 1);
    assert_eq!(pruned.removed[0].branch, work_old);
    assert!(!repo.has_branch(&work_old));
    assert!(repo.has_branch(&newest[0]) && repo.has_branch(&newest[1]));
}

#[test]
fn deletes_branches_of_runs_older_than_keep_branches_for_including_ones_named_by_old_run_ids() {
    let repo = Repo::new(&[("a.txt", "a\n")]);
    let settings = GitSettings {
        keep_branches_for: Some(std::time::Duration::from_secs(7 * 86_400)),
        ..keeping(100)
    };
    let workspaces = repo.workspaces(&settings);
    let old = finished_batch(&workspaces, "run-old", "b", false);
    let young = finished_batch(&workspaces, "run-young", "b", false);
    let now = std::time::SystemTime::now();
    let now_ms = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    repo.set_created(&old, now_ms - 8 * 86_400_000);
    repo.set_created(&young, now_ms - 6 * 86_400_000);
    // A branch from before runs were recorded: its run id says when it was.
    let git = repo.git();
    let head = git.find_commit(repo.head_of("main")).unwrap();
    git.branch("runner/20250101-120000-abcd-build", &head, false)
        .unwrap();

    let pruned = workspaces.prune_branches_at(false, now).unwrap();
    let removed: Vec<(&str, &str)> = pruned
        .removed
        .iter()
        .map(|b| (b.branch.as_str(), b.run.as_str()))
        .collect();
    assert_eq!(
        removed,
        vec![
            ("runner/20250101-120000-abcd-build", "20250101-120000-abcd"),
            (old.as_str(), "run-old"),
        ]
    );
    assert!(pruned.removed[1].why.contains("keep_branches_for"));
    assert_eq!(repo.runner_branches(), vec![young]);
}

#[test]
fn a_kept_worktree_goes_with_its_branch_unless_it_holds_uncommitted_changes() {
    let repo = Repo::new(&[("a.txt", "a\n")]);
    let settings = GitSettings {
        keep_worktrees: true,
        ..keeping(0)
    };
    let workspaces = repo.workspaces(&settings);
    let clean = workspaces.prepare("run-1", "clean", &[]).unwrap();
    clean.commit("clean").unwrap();
    workspaces.remove(&clean).unwrap();
    let dirty = workspaces.prepare("run-1", "dirty", &[]).unwrap();
    dirty.commit("dirty").unwrap();
    workspaces.remove(&dirty).unwrap();
    std::fs::write(dirty.dir.join("later.txt"), "not committed").unwrap();
    // A batch still running (its owner file is there) is never touched.
    let running = workspaces.prepare("run-2", "running", &[]).unwrap();

    let pruned = workspaces.prune_branches(false).unwrap();
    assert_eq!(pruned.removed.len(), 1, "{pruned:?}");
    assert_eq!(pruned.removed[0].branch, clean.branch);
    assert!(pruned.removed[0].worktree.is_some());
    assert!(!clean.path.exists() && !repo.has_branch(&clean.branch));
    let why: Vec<(&str, &str)> = pruned
        .kept
        .iter()
        .map(|k| (k.branch.as_str(), k.why.as_str()))
        .collect();
    assert!(
        why.contains(&(
            dirty.branch.as_str(),
            &*format!(
                "its kept worktree {} has uncommitted changes",
                dirty.path.canonicalize().unwrap().display()
            )
        )),
        "{why:?}"
    );
    assert!(
        why.contains(&(running.branch.as_str(), "a running batch works on it")),
        "{why:?}"
    );
    assert!(dirty.path.join("later.txt").exists());
    assert!(running.path.exists() && repo.has_branch(&running.branch));
    workspaces.remove(&running).unwrap();
}

/// A batch that changes nothing, so its branch is merged into `main` at once.
const IDLE_KEEPING_ONE: &str = r#"version = 1
[git]
keep_branches = 1

[[pipelines.default.batches]]
id = "idle"
[[pipelines.default.batches.tasks]]
id = "nothing"
type = "exec"
config = { command = "true" }
"#;

#[tokio::test]
async fn keep_branches_applies_at_start_and_runner_gc_applies_it_now_after_a_dry_run() {
    let repo = Repo::with_runner_toml(IDLE_KEEPING_ONE, &[]);
    for _ in 0..2 {
        let (code, stdout, stderr) = repo.runner(&["run"]).await;
        assert_eq!(code, 0, "{stdout}\n{stderr}");
    }
    let branches = repo.runner_branches();
    assert_eq!(branches.len(), 2, "one run kept plus the one that ran");
    let (first_run, second_run) = {
        let (_, json, _) = repo.runner(&["history", "--json"]).await;
        let runs: serde_json::Value = serde_json::from_str(&json).unwrap();
        (
            runs[1]["id"].as_str().unwrap().to_string(),
            runs[0]["id"].as_str().unwrap().to_string(),
        )
    };
    let first = branches
        .iter()
        .find(|b| b.contains(&first_run))
        .expect("the first run's branch");

    let (code, stdout, _) = repo.runner(&["gc", "--dry-run"]).await;
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains(&format!("would remove branch {first}: ")),
        "{stdout}"
    );
    assert!(
        stdout.contains("gc --dry-run: would remove 1 branch, 0 worktrees"),
        "{stdout}"
    );
    assert!(stdout.contains("would remove from the history"), "{stdout}");
    assert_eq!(
        repo.runner_branches(),
        branches,
        "a dry run deletes nothing"
    );

    let (code, stdout, stderr) = repo.runner(&["run"]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "deleted 1 branch of old runs (`[git] keep_branches`): {first}"
        )),
        "{stdout}"
    );
    let now = repo.runner_branches();
    assert_eq!(now.len(), 2);
    assert!(!repo.has_branch(first));
    assert!(now.iter().any(|b| b.contains(&second_run)));

    let (code, stdout, _) = repo.runner(&["gc"]).await;
    assert_eq!(code, 0, "{stdout}");
    let second = now.iter().find(|b| b.contains(&second_run)).unwrap();
    assert!(
        stdout.contains(&format!("removed branch {second}: ")),
        "{stdout}"
    );
    assert!(
        stdout.contains("gc: removed 1 branch, 0 worktrees"),
        "{stdout}"
    );
    assert!(stdout.contains("removed from the history"), "{stdout}");
    assert_eq!(repo.runner_branches().len(), 1);
}
