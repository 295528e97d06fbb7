//! What `doctor` found: one result per step and route, printed as `[PASS]`/`[FAIL]`/`[SKIP]`
//! lines with a `hint:` under each failure, and the summary line.
//!
//! Invariant: every text held here was built by doctor from public facts (names, addresses,
//! statuses, certificate subjects, error kinds); none holds a secret, token, proof or key.

use std::fmt;

use super::hints::Hint;

/// How one step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    /// Not applicable to this route, or a step it depends on failed.
    Skip,
}

impl Outcome {
    pub fn tag(self) -> &'static str {
        match self {
            Outcome::Pass => "[PASS]",
            Outcome::Fail => "[FAIL]",
            Outcome::Skip => "[SKIP]",
        }
    }
}

/// The steps, in the order they run for each route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Dns,
    Tcp,
    /// Only with `upstream.proxy`: the CONNECT tunnel (DNS and TCP are then the proxy's).
    Proxy,
    Tls,
    ClientCert,
    Token,
    Call,
}

impl Step {
    pub const ALL: [Step; 6] = [
        Step::Dns,
        Step::Tcp,
        Step::Tls,
        Step::ClientCert,
        Step::Token,
        Step::Call,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::Dns => "DNS",
            Step::Tcp => "TCP",
            Step::Proxy => "proxy tunnel",
            Step::Tls => "TLS handshake",
            Step::ClientCert => "client certificate",
            Step::Token => "token fetch",
            Step::Call => "authenticated call",
        }
    }
}

/// The result of one step of one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    pub step: Step,
    pub outcome: Outcome,
    /// One short line: what was seen.
    pub detail: String,
    /// Further facts printed under the line (the server chain, addresses that failed).
    pub notes: Vec<String>,
    /// On a failure: what most likely is wrong and what to do.
    pub hint: Option<Hint>,
}

impl StepResult {
    pub fn pass(step: Step, detail: impl Into<String>) -> Self {
        Self::new(step, Outcome::Pass, detail.into(), None)
    }

    pub fn fail(step: Step, detail: impl Into<String>, hint: Hint) -> Self {
        Self::new(step, Outcome::Fail, detail.into(), Some(hint))
    }

    pub fn skip(step: Step, detail: impl Into<String>) -> Self {
        Self::new(step, Outcome::Skip, detail.into(), None)
    }

    /// Skipped because `failed`, a step this one needs, failed.
    pub fn skip_after(step: Step, failed: Step) -> Self {
        Self::skip(step, format!("after {} failed", failed.name()))
    }

    pub fn with_notes(mut self, notes: Vec<String>) -> Self {
        self.notes = notes;
        self
    }

    fn new(step: Step, outcome: Outcome, detail: String, hint: Option<Hint>) -> Self {
        StepResult {
            step,
            outcome,
            detail,
            notes: Vec::new(),
            hint,
        }
    }
}

/// Steps are indented under their route; notes and hints under the step's text.
const STEP_INDENT: &str = "  ";
const NOTE_INDENT: &str = "         ";

impl fmt::Display for StepResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{STEP_INDENT}{} {}: {}",
            self.outcome.tag(),
            self.step.name(),
            self.detail
        )?;
        for note in &self.notes {
            writeln!(f, "{NOTE_INDENT}{note}")?;
        }
        if let Some(hint) = &self.hint {
            writeln!(f, "{NOTE_INDENT}hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every step of one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteReport {
    pub route: String,
    /// The upstream URL (configuration text, no credential in it).
    pub upstream: String,
    /// `none`, `basic` or `oauth2`.
    pub auth: &'static str,
    pub steps: Vec<StepResult>,
}

impl RouteReport {
    pub fn step(&self, step: Step) -> Option<&StepResult> {
        self.steps.iter().find(|s| s.step == step)
    }

    /// The line printed before the route's steps.
    pub fn header(&self) -> String {
        format!(
            "route {}: {} (auth: {})",
            self.route, self.upstream, self.auth
        )
    }
}

/// Everything `doctor` found, route by route, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    pub routes: Vec<RouteReport>,
}

impl Report {
    pub fn route(&self, name: &str) -> Option<&RouteReport> {
        self.routes.iter().find(|r| r.route == name)
    }

    pub fn count(&self, outcome: Outcome) -> usize {
        self.routes
            .iter()
            .flat_map(|r| &r.steps)
            .filter(|s| s.outcome == outcome)
            .count()
    }

    /// True when no step failed (the command then exits 0).
    pub fn is_ok(&self) -> bool {
        self.count(Outcome::Fail) == 0
    }

    /// `doctor: N passed, M failed, K skipped`
    pub fn summary(&self) -> String {
        format!(
            "doctor: {} passed, {} failed, {} skipped",
            self.count(Outcome::Pass),
            self.count(Outcome::Fail),
            self.count(Outcome::Skip)
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for route in &self.routes {
            writeln!(f, "{}", route.header())?;
            for step in &route.steps {
                write!(f, "{step}")?;
            }
        }
        writeln!(f, "{}", self.summary())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            routes: vec![RouteReport {
                route: "raas".to_owned(),
                upstream: "https://integration-api.tangocard.com".to_owned(),
                auth: "basic",
                steps: vec![
                    StepResult::pass(Step::Dns, "integration-api.tangocard.com → 192.0.2.10")
                        .with_notes(vec!["a note".to_owned()]),
                    StepResult::fail(Step::Tcp, "connection refused", Hint::TcpFailed),
                    StepResult::skip_after(Step::Tls, Step::Tcp),
                ],
            }],
        }
    }

    #[test]
    fn counts_and_summary() {
        let report = report();
        assert_eq!(report.count(Outcome::Pass), 1);
        assert!(!report.is_ok());
        assert_eq!(report.summary(), "doctor: 1 passed, 1 failed, 1 skipped");
        assert!(Report::default().is_ok());
    }

    #[test]
    fn printed_lines() {
        let text = report().to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "route raas: https://integration-api.tangocard.com (auth: basic)"
        );
        assert_eq!(
            lines[1],
            "  [PASS] DNS: integration-api.tangocard.com → 192.0.2.10"
        );
        assert_eq!(lines[2], "         a note");
        assert_eq!(lines[3], "  [FAIL] TCP: connection refused");
        assert!(lines[4].starts_with("         hint: "), "{}", lines[4]);
        assert_eq!(lines[5], "  [SKIP] TLS handshake: after TCP failed");
        assert_eq!(lines[6], "doctor: 1 passed, 1 failed, 1 skipped");
    }
}
