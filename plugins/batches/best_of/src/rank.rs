//! Ranking attempts and saying why.
//!
//! ## Order
//! First, always: attempts that passed their check (or completed, when
//! there is no check), then those that completed but failed the check,
//! then those whose tasks failed; only the first kind can win. Then the
//! keys of `pick` in order: `diff` (fewer files changed, then fewer lines
//! added plus deleted), `cost` (lower; an attempt whose agents reported no
//! cost after every one that did), `tokens` (fewer, input plus output),
//! `duration` (shorter). Attempts equal on every key keep plan order: the
//! earlier one ranks first. `check` names the first rule and may only come
//! first in `pick`.

use crate::bindings::exports::runner::plugin::attempts::AttemptReport;
use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Check,
    Diff,
    Cost,
    Tokens,
    Duration,
}

pub const DEFAULT_KEYS: [Key; 3] = [Key::Check, Key::Diff, Key::Cost];

impl Key {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "check" => Self::Check,
            "diff" => Self::Diff,
            "cost" => Self::Cost,
            "tokens" => Self::Tokens,
            "duration" => Self::Duration,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Check => "check",
            Self::Diff => "diff",
            Self::Cost => "cost",
            Self::Tokens => "tokens",
            Self::Duration => "duration",
        }
    }

    /// How `report` measures on this key, for people.
    fn measure(self, report: &AttemptReport) -> String {
        match self {
            Self::Check => match &report.check {
                Some(check) if check.passed => "passed".into(),
                Some(_) => "failed".into(),
                None => "none".into(),
            },
            Self::Diff => diff_text(report),
            Self::Cost => report
                .cost_usd
                .map_or("no cost reported".into(), |c| format!("${c:.4}")),
            Self::Tokens => format!("{} tokens", report.tokens),
            Self::Duration => format!("{} ms", report.duration_ms),
        }
    }

    /// `Less`: `a` is better.
    fn compare(self, a: &AttemptReport, b: &AttemptReport) -> Ordering {
        match self {
            // The tier already holds the check.
            Self::Check => Ordering::Equal,
            Self::Diff => (a.files_changed, a.additions + a.deletions)
                .cmp(&(b.files_changed, b.additions + b.deletions)),
            Self::Cost => match (a.cost_usd, b.cost_usd) {
                (Some(a), Some(b)) => a.total_cmp(&b),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            },
            Self::Tokens => a.tokens.cmp(&b.tokens),
            Self::Duration => a.duration_ms.cmp(&b.duration_ms),
        }
    }

    /// What makes the worse attempt worse, as in `bigger diff`.
    fn worse(self) -> &'static str {
        match self {
            Self::Check => "failed the check",
            Self::Diff => "bigger diff",
            Self::Cost => "higher cost",
            Self::Tokens => "more tokens",
            Self::Duration => "took longer",
        }
    }

    /// What makes the better attempt better, as in `smaller diff`.
    fn better(self) -> &'static str {
        match self {
            Self::Check => "passed the check",
            Self::Diff => "smaller diff",
            Self::Cost => "lower cost",
            Self::Tokens => "fewer tokens",
            Self::Duration => "faster",
        }
    }
}

fn diff_text(report: &AttemptReport) -> String {
    format!(
        "{} file{}, +{} -{}",
        report.files_changed,
        if report.files_changed == 1 { "" } else { "s" },
        report.additions,
        report.deletions
    )
}

/// 0: may win; 1: failed its check; 2: its tasks failed.
fn tier(report: &AttemptReport) -> u8 {
    match (&report.check, report.completed) {
        (_, false) => 2,
        (Some(check), true) if !check.passed => 1,
        _ => 0,
    }
}

/// The ranking and what to say about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Index into the reports of the winner.
    pub winner: Option<usize>,
    /// 1 for the best, by report index.
    pub ranks: Vec<u32>,
    /// Why each attempt ranked where it did, by report index.
    pub notes: Vec<String>,
    pub reason: String,
}

pub fn rank(reports: &[AttemptReport], keys: &[Key], check: Option<&str>) -> Verdict {
    let keys: Vec<Key> = keys.iter().copied().filter(|k| *k != Key::Check).collect();
    let order = |a: &AttemptReport, b: &AttemptReport| {
        tier(a)
            .cmp(&tier(b))
            .then_with(|| {
                keys.iter()
                    .map(|k| k.compare(a, b))
                    .find(|o| o.is_ne())
                    .unwrap_or(Ordering::Equal)
            })
            .then(a.number.cmp(&b.number))
    };
    let mut sorted: Vec<usize> = (0..reports.len()).collect();
    sorted.sort_by(|&a, &b| order(&reports[a], &reports[b]));
    let mut ranks = vec![0; reports.len()];
    for (place, &index) in sorted.iter().enumerate() {
        ranks[index] = place as u32 + 1;
    }
    let check_text = check.map_or(String::new(), |c| format!(" `{c}`"));
    let Some(&best) = sorted.first() else {
        return Verdict {
            winner: None,
            ranks,
            notes: Vec::new(),
            reason: "there were no attempts".into(),
        };
    };
    let winner = (tier(&reports[best]) == 0).then_some(best);
    let notes = (0..reports.len())
        .map(|i| note(reports, i, winner, &keys, &check_text))
        .collect();
    let reason = match winner {
        None if reports.iter().any(|r| r.completed) => {
            format!("no attempt passed the check{check_text}")
        }
        None => "no attempt completed its tasks".into(),
        Some(w) => match sorted.get(1) {
            None => match check {
                Some(_) => format!("the only attempt, and it passed the check{check_text}"),
                None => "the only attempt".into(),
            },
            Some(&next) => why_first(reports, w, next, &keys, &check_text),
        },
    };
    Verdict {
        winner,
        ranks,
        notes,
        reason,
    }
}

/// Why `w` ranks before `next`, the runner-up.
fn why_first(
    reports: &[AttemptReport],
    w: usize,
    next: usize,
    keys: &[Key],
    check_text: &str,
) -> String {
    let (a, b) = (&reports[w], &reports[next]);
    let only = reports.iter().filter(|r| tier(r) == 0).count() == 1;
    match tier(b) {
        1 if only => return format!("the only attempt that passed the check{check_text}"),
        1 => {
            return format!(
                "it passed the check{check_text} and attempt {} did not",
                b.number
            );
        }
        2 if only && check_text.is_empty() => {
            return "the only attempt whose tasks completed".into();
        }
        2 if only => {
            return format!(
                "the only attempt whose tasks completed, and it passed the check{check_text}"
            );
        }
        2 => return format!("its tasks completed and attempt {}'s did not", b.number),
        _ => {}
    }
    let mut ties = Vec::new();
    for key in keys {
        if key.compare(a, b).is_lt() {
            let tied = if ties.is_empty() {
                String::new()
            } else {
                format!("same {} as attempt {}; ", ties.join(" and "), b.number)
            };
            return format!(
                "{tied}{}: {} (attempt {}: {})",
                key.better(),
                key.measure(a),
                b.number,
                key.measure(b)
            );
        }
        ties.push(key.name());
    }
    let on = if ties.is_empty() {
        String::new()
    } else {
        format!(" on {}", ties.join(" and "))
    };
    format!(
        "it ties with attempt {}{on}, and the earlier attempt is kept",
        b.number
    )
}

/// One line on attempt `i`.
fn note(
    reports: &[AttemptReport],
    i: usize,
    winner: Option<usize>,
    keys: &[Key],
    check_text: &str,
) -> String {
    let r = &reports[i];
    match tier(r) {
        2 => {
            return format!(
                "its tasks failed: {}",
                r.error.as_deref().unwrap_or("(no error given)")
            );
        }
        1 => {
            let how = r
                .check
                .as_ref()
                .and_then(|c| c.error.clone())
                .unwrap_or_else(|| "it failed".into());
            return format!("failed the check{check_text}: {how}");
        }
        _ => {}
    }
    let Some(w) = winner else {
        return "passed".into();
    };
    if w == i {
        return format!("won: {}", measures(r, keys, check_text));
    }
    let best = &reports[w];
    match keys.iter().find(|k| k.compare(r, best).is_gt()) {
        Some(key) => format!(
            "{} than attempt {}: {} vs {}",
            key.worse(),
            best.number,
            key.measure(r),
            key.measure(best)
        ),
        None => format!(
            "ties with attempt {}, which came earlier: {}",
            best.number,
            measures(r, keys, check_text)
        ),
    }
}

/// `passed the check; 1 file, +3 -0; $0.0456`.
fn measures(report: &AttemptReport, keys: &[Key], check_text: &str) -> String {
    let mut parts = Vec::new();
    if !check_text.is_empty() {
        parts.push(format!("passed the check{check_text}"));
    }
    parts.extend(keys.iter().map(|k| k.measure(report)));
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::exports::runner::plugin::attempts::CheckResult;

    fn report(
        number: u32,
        passed: Option<bool>,
        files: u32,
        lines: u32,
        cost: Option<f64>,
    ) -> AttemptReport {
        AttemptReport {
            number,
            agent: None,
            branch: format!("runner/r-b-{number}"),
            completed: true,
            error: None,
            check: passed.map(|passed| CheckResult {
                passed,
                exit_code: Some(if passed { 0 } else { 1 }),
                error: (!passed).then(|| "`make test` exited with code 1".into()),
                duration_ms: 5,
            }),
            files_changed: files,
            additions: lines,
            deletions: 0,
            duration_ms: 100,
            tokens: 10,
            cost_usd: cost,
        }
    }

    #[test]
    fn a_passed_check_beats_a_smaller_diff() {
        let reports = [
            report(1, Some(false), 1, 1, Some(0.01)),
            report(2, Some(true), 3, 9, Some(0.5)),
        ];
        let verdict = rank(&reports, &DEFAULT_KEYS, Some("make test"));
        assert_eq!(verdict.winner, Some(1));
        assert_eq!(verdict.ranks, vec![2, 1]);
        assert_eq!(
            verdict.reason,
            "the only attempt that passed the check `make test`"
        );
        assert_eq!(
            verdict.notes[0],
            "failed the check `make test`: `make test` exited with code 1"
        );
    }

    #[test]
    fn among_passing_attempts_the_smaller_diff_then_the_lower_cost_wins() {
        let reports = [
            report(1, Some(true), 2, 4, Some(0.01)),
            report(2, Some(true), 1, 4, Some(0.30)),
            report(3, Some(true), 1, 4, Some(0.05)),
        ];
        let verdict = rank(&reports, &DEFAULT_KEYS, Some("t"));
        assert_eq!(verdict.winner, Some(2));
        assert_eq!(verdict.ranks, vec![3, 2, 1]);
        assert_eq!(
            verdict.reason,
            "same diff as attempt 2; lower cost: $0.0500 (attempt 2: $0.3000)"
        );
        assert_eq!(
            verdict.notes[0],
            "bigger diff than attempt 3: 2 files, +4 -0 vs 1 file, +4 -0"
        );
        assert_eq!(
            verdict.notes[1],
            "higher cost than attempt 3: $0.3000 vs $0.0500"
        );
    }

    #[test]
    fn a_tie_on_every_key_keeps_the_earlier_attempt() {
        let reports = [
            report(1, None, 1, 1, Some(0.1)),
            report(2, None, 1, 1, Some(0.1)),
        ];
        let verdict = rank(&reports, &DEFAULT_KEYS, None);
        assert_eq!(verdict.winner, Some(0));
        assert_eq!(
            verdict.reason,
            "it ties with attempt 2 on diff and cost, and the earlier attempt is kept"
        );
    }

    #[test]
    fn an_unknown_cost_ranks_after_a_known_one_and_no_passing_attempt_means_no_winner() {
        let reports = [
            report(1, None, 1, 1, None),
            report(2, None, 1, 1, Some(2.0)),
        ];
        assert_eq!(rank(&reports, &DEFAULT_KEYS, None).winner, Some(1));
        let failing = [report(1, Some(false), 1, 1, None)];
        let verdict = rank(&failing, &DEFAULT_KEYS, Some("t"));
        assert_eq!(verdict.winner, None);
        assert_eq!(verdict.reason, "no attempt passed the check `t`");
    }
}
