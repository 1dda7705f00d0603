//! Budgets: what an agent command, an agent task and a whole run may spend.
//!
//! The host adds up the usage the adapter reports while the CLI streams
//! (cost in dollars as reported, tokens as input plus output). A command
//! is held to the tighter of its agent's and its task's caps; a run's cap
//! counts every agent command of the run together. When a cap is passed,
//! the command is stopped (its process group killed) and fails with
//! "budget exceeded: $1.27 of $1.00 (…)"; a run already over its cap
//! starts no further command.

use crate::config::Budget;
use std::sync::Mutex;

/// Dollars and tokens spent.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spent {
    pub cost_usd: f64,
    pub tokens: u64,
}

impl Spent {
    /// The message for the first cap of `budget` that `self` passed, naming
    /// where the cap is set (`whose`).
    pub fn exceeds(&self, budget: &Budget, whose: &str) -> Option<String> {
        if let Some(cap) = budget.max_cost_usd
            && self.cost_usd > cap
        {
            return Some(format!(
                "budget exceeded: {} of {} (max_cost_usd of {whose})",
                dollars(self.cost_usd),
                dollars(cap)
            ));
        }
        if let Some(cap) = budget.max_tokens
            && self.tokens > cap
        {
            return Some(format!(
                "budget exceeded: {} tokens of {} (max_tokens of {whose})",
                grouped(self.tokens),
                grouped(cap)
            ));
        }
        None
    }

    /// Whether `budget` leaves nothing to spend.
    pub fn used_up(&self, budget: &Budget) -> bool {
        budget.max_cost_usd.is_some_and(|cap| self.cost_usd >= cap)
            || budget.max_tokens.is_some_and(|cap| self.tokens >= cap)
    }
}

/// What one run's agent commands have spent together, against its cap.
#[derive(Debug)]
pub struct RunBudget {
    cap: Budget,
    spent: Mutex<Spent>,
}

impl RunBudget {
    pub fn new(cap: Budget) -> Self {
        Self {
            cap,
            spent: Mutex::new(Spent::default()),
        }
    }

    /// A run's cap of which `spent` is already spent: a worker's view of
    /// the run it runs one agent task of (`runner run --queue`).
    pub fn with_spent(cap: Budget, spent: Spent) -> Self {
        Self {
            cap,
            spent: Mutex::new(spent),
        }
    }

    pub fn cap(&self) -> Budget {
        self.cap
    }

    /// Adds what a command just reported; the message when the run's cap
    /// is now passed.
    pub fn add(&self, cost_usd: f64, tokens: u64) -> Option<String> {
        let mut spent = self.spent.lock().expect("budget lock");
        spent.cost_usd += cost_usd;
        spent.tokens += tokens;
        spent.exceeds(&self.cap, "the run, in [defaults]")
    }

    /// Why a command may not start: the run has spent its cap.
    pub fn refuses_start(&self) -> Option<String> {
        let spent = *self.spent.lock().expect("budget lock");
        spent.used_up(&self.cap).then(|| {
            let of = match (self.cap.max_cost_usd, self.cap.max_tokens) {
                (Some(cap), _) if spent.cost_usd >= cap => {
                    format!("{} of {}", dollars(spent.cost_usd), dollars(cap))
                }
                (_, Some(cap)) => format!("{} tokens of {}", grouped(spent.tokens), grouped(cap)),
                _ => String::new(),
            };
            format!(
                "budget exceeded: the run has spent {of} (its cap in [defaults]); this command did not start"
            )
        })
    }

    pub fn spent(&self) -> Spent {
        *self.spent.lock().expect("budget lock")
    }
}

/// `$1.27`, or four decimals under a dollar (`$0.0123`).
pub fn dollars(value: f64) -> String {
    if value >= 1.0 {
        format!("${value:.2}")
    } else {
        format!("${value:.4}")
    }
}

/// `180,000`.
fn grouped(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_cap_passed_and_by_how_much() {
        let cap = Budget {
            max_cost_usd: Some(1.0),
            max_tokens: Some(100_000),
        };
        let spent = Spent {
            cost_usd: 1.27,
            tokens: 10,
        };
        assert_eq!(
            spent.exceeds(&cap, "agent `a`").as_deref(),
            Some("budget exceeded: $1.27 of $1.00 (max_cost_usd of agent `a`)")
        );
        let spent = Spent {
            cost_usd: 0.5,
            tokens: 179_972,
        };
        assert_eq!(
            spent.exceeds(&cap, "task `t`").as_deref(),
            Some("budget exceeded: 179,972 tokens of 100,000 (max_tokens of task `t`)")
        );
        assert_eq!(Spent::default().exceeds(&cap, "x"), None);
        // Exactly at the cap is not past it, but leaves nothing to start with.
        let at = Spent {
            cost_usd: 1.0,
            tokens: 0,
        };
        assert_eq!(at.exceeds(&cap, "x"), None);
        assert!(at.used_up(&cap));
    }

    #[test]
    fn a_run_adds_up_every_command_and_then_starts_nothing() {
        let run = RunBudget::new(Budget {
            max_cost_usd: Some(0.05),
            max_tokens: None,
        });
        assert_eq!(run.refuses_start(), None);
        assert_eq!(run.add(0.03, 100), None);
        let passed = run.add(0.03, 100).expect("past the cap");
        assert!(
            passed.starts_with("budget exceeded: $0.0600 of $0.0500"),
            "{passed}"
        );
        let refused = run.refuses_start().expect("refused");
        assert!(
            refused.contains("the run has spent $0.0600 of $0.0500"),
            "{refused}"
        );
        assert_eq!(run.spent().tokens, 200);
    }
}
