//! `[git]` in `runner.toml`.

use protocol::RunReason;
use serde::Deserialize;
use std::time::Duration;

/// How batches use git.
///
/// ```toml
/// [git]
/// base = "main"            # branch each batch from here (default: HEAD)
/// merge = "ff"             # "ff", "merge" or "none" (default)
/// target = "main"          # merge into this branch (default: base, else HEAD's branch)
/// keep_worktrees = false   # keep each batch's worktree after it ends
/// setup = "npm ci"         # run in each batch's worktree before its tasks
/// cleanup = "rm -rf tmp"   # run in each batch's worktree after its tasks
/// keep_branches = 20       # branches of the 20 newest runs stay (default 20)
/// keep_branches_for = "7d" # and none older than 7 days (default: no age limit)
/// prune_unmerged = false   # also delete branches not merged into the target
/// remote = "git@host:p.git" # where workers fetch batch bases and push batch branches
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitSettings {
    /// Give each batch its own branch and worktree (default `true`); with
    /// `false` batches run in the project directory.
    /// Example: `enabled = false`
    pub enabled: Option<bool>,
    /// The branch, tag or commit each batch branches from; default HEAD.
    /// Example: `base = "main"`
    pub base: Option<String>,
    /// Merge a completed batch's branch into `target`: `ff` fast-forwards when
    /// it can and makes a merge commit otherwise, `merge` always makes a merge
    /// commit, `none` (default) leaves the branch for review.
    /// Example: `merge = "ff"`
    #[serde(default)]
    pub merge: MergeMode,
    /// The local branch to merge into; default `base` when it is a branch,
    /// else the branch checked out when the run started.
    /// Example: `target = "main"`
    pub target: Option<String>,
    /// Keep each batch's worktree after the batch ends (the branch is always kept).
    /// Example: `keep_worktrees = true`
    #[serde(default)]
    pub keep_worktrees: bool,
    /// A shell command run (`sh -c`) in each batch's worktree before its tasks;
    /// recorded as an execution with run reason `setup_script`.
    /// Example: `setup = "npm ci"`
    pub setup: Option<String>,
    /// A shell command run (`sh -c`) in each batch's worktree after its tasks,
    /// whatever their outcome; recorded with run reason `cleanup_script`.
    /// Example: `cleanup = "rm -rf node_modules/.cache"`
    pub cleanup: Option<String>,
    /// Branch retention by count: the `runner/<run>-<batch>` branches of this
    /// many of the newest runs stay; older runs' branches are deleted when
    /// a run starts and by `runner gc` (default 20).
    /// Example: `keep_branches = 50`
    pub keep_branches: Option<usize>,
    /// Branch retention by age: branches of runs older than this are deleted
    /// too, whatever their count; days (`"7d"`), hours, minutes or seconds.
    /// Example: `keep_branches_for = "14d"`
    #[serde(default, deserialize_with = "age")]
    pub keep_branches_for: Option<Duration>,
    /// Also delete old branches whose commits are not all in the target
    /// branch (default `false`: a branch with work no other branch has stays).
    /// Example: `prune_unmerged = true`
    #[serde(default)]
    pub prune_unmerged: bool,
    /// The repository every worker can fetch from and push to (a URL, or a
    /// path on a shared disk): batches run on workers (`--queue`) branch from
    /// a commit published there and their branches come back through it.
    /// Example: `remote = "ssh://git@example.com/project.git"`
    pub remote: Option<String>,
}

/// Branches of this many runs stay unless `keep_branches` says otherwise.
pub const DEFAULT_KEEP_BRANCHES: usize = 20;

/// `"7d"`, `"12h"`, `"90m"`, `"3600s"`.
fn age<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_age(&text).map(Some).map_err(serde::de::Error::custom)
}

pub(crate) fn parse_age(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let not_an_age = || format!("`{text}` is not an age; write for example \"7d\" or \"12h\"");
    if let Some(days) = trimmed.strip_suffix('d') {
        let days: u64 = days.parse().map_err(|_| not_an_age())?;
        return days
            .checked_mul(86_400)
            .filter(|secs| *secs > 0)
            .map(Duration::from_secs)
            .ok_or_else(not_an_age);
    }
    crate::units::parse_duration(trimmed).map_err(|_| not_an_age())
}

/// How a batch's branch goes into the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeMode {
    /// Leave the branch for review.
    #[default]
    None,
    /// Fast-forward when possible, else a merge commit.
    Ff,
    /// Always a merge commit.
    Merge,
}

impl GitSettings {
    pub fn enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }

    /// How many runs' branches stay.
    pub fn keep_branches(&self) -> usize {
        self.keep_branches.unwrap_or(DEFAULT_KEEP_BRANCHES)
    }

    /// The script to run for `reason` (`setup_script` or `cleanup_script`), if any.
    pub fn script(&self, reason: RunReason) -> Option<&str> {
        match reason {
            RunReason::SetupScript => self.setup.as_deref(),
            RunReason::CleanupScript => self.cleanup.as_deref(),
            _ => None,
        }
        .filter(|script| !script.trim().is_empty())
    }
}

impl GitSettings {
    /// The rules `[git]` has that need no repository: `runner check` runs
    /// them; whether `base` and `target` exist is known only in the repository.
    pub fn check(&self) -> Result<(), super::InvalidSetting> {
        use super::InvalidSetting;
        if self
            .base
            .as_deref()
            .is_some_and(|base| base.trim().is_empty())
        {
            return Err(InvalidSetting::new(
                "base",
                "is empty; name a branch, tag or commit, or leave it out for HEAD",
            ));
        }
        if self
            .remote
            .as_deref()
            .is_some_and(|remote| remote.trim().is_empty())
        {
            return Err(InvalidSetting::new(
                "remote",
                "is empty; name a URL or path every worker can fetch from and push to, or leave it out",
            ));
        }
        if let Some(target) = &self.target
            && !git2::Branch::name_is_valid(target).unwrap_or(false)
        {
            return Err(InvalidSetting::new(
                "target",
                format!("`{target}` is not a valid branch name"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_git_table_and_rejects_unknown_keys() {
        let settings: GitSettings = toml::from_str(
            "base = \"main\"\nmerge = \"ff\"\ntarget = \"main\"\nkeep_worktrees = true\nsetup = \"npm ci\"\ncleanup = \" \"\n",
        )
        .unwrap();
        assert_eq!(settings.merge, MergeMode::Ff);
        assert!(settings.enabled() && settings.keep_worktrees);
        assert_eq!(settings.script(RunReason::SetupScript), Some("npm ci"));
        assert_eq!(
            settings.script(RunReason::CleanupScript),
            None,
            "a blank script is none"
        );
        assert_eq!(
            toml::from_str::<GitSettings>("").unwrap(),
            GitSettings::default()
        );
        let err = toml::from_str::<GitSettings>("merge = \"rebase\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `rebase`"), "{err}");
        let settings: GitSettings =
            toml::from_str("keep_branches = 3\nkeep_branches_for = \"7d\"\nprune_unmerged = true")
                .unwrap();
        assert_eq!(settings.keep_branches(), 3);
        assert_eq!(
            settings.keep_branches_for,
            Some(Duration::from_secs(7 * 86_400))
        );
        assert!(settings.prune_unmerged);
        let settings: GitSettings = toml::from_str("remote = \"/srv/git/p.git\"").unwrap();
        assert_eq!(settings.remote.as_deref(), Some("/srv/git/p.git"));
        assert!(settings.check().is_ok());
        let settings: GitSettings = toml::from_str("remote = \" \"").unwrap();
        let err = settings.check().unwrap_err();
        assert_eq!(err.key, "remote");
        assert!(err.message.contains("is empty"), "{}", err.message);
        assert_eq!(
            GitSettings::default().keep_branches(),
            DEFAULT_KEEP_BRANCHES
        );
        let err = toml::from_str::<GitSettings>("keep_branches_for = \"a week\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`a week` is not an age"), "{err}");
        assert_eq!(parse_age("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert!(parse_age("0d").is_err() && parse_age("99999999999999999d").is_err());
        let err = toml::from_str::<GitSettings>("branch = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `branch`"), "{err}");
    }
}
