//! `quorate bench mesh --runs N` (§12.10.2): each figure's median, lowest and highest over N
//! runs on one mesh, and how many runs met its goal. On a shared machine one run's figure
//! moves with its neighbours; the spread over runs says how far.

use super::figures::{Figures, summary_line};

/// A figure's goal: at most or at least a value.
#[derive(Clone, Copy)]
enum Goal {
    AtMost(f64),
    AtLeast(f64),
}

impl Goal {
    fn met(self, value: f64) -> bool {
        match self {
            Goal::AtMost(g) => value <= g,
            Goal::AtLeast(g) => value >= g,
        }
    }

    fn text(self) -> String {
        match self {
            Goal::AtMost(g) => format!("goal <= {g}"),
            Goal::AtLeast(g) => format!("goal >= {g}"),
        }
    }
}

/// One figure over the runs that measured it.
pub struct Spread {
    /// The figure's name, as the summary line writes it.
    pub name: &'static str,
    /// Its value in each run that measured it, in run order.
    pub values: Vec<f64>,
    goal: Goal,
}

impl Spread {
    /// The median (the mean of the middle two for an even count); NaN when no run measured it.
    pub fn median(&self) -> f64 {
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// Runs whose value met the goal.
    pub fn met(&self) -> usize {
        self.values.iter().filter(|v| self.goal.met(**v)).count()
    }

    fn lowest(&self) -> f64 {
        self.values.iter().copied().fold(f64::INFINITY, f64::min)
    }

    fn highest(&self) -> f64 {
        self.values
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
    }

    fn show(&self, v: f64) -> String {
        if self.name == "jobs_per_s" {
            format!("{v:.0}")
        } else {
            format!("{v:.2}")
        }
    }

    /// The figure's line: median, range, runs meeting the goal out of the runs that measured it.
    pub fn line(&self) -> String {
        if self.values.is_empty() {
            return format!("  {:<15} not measured", self.name);
        }
        format!(
            "  {:<15} {} ({}-{})   {} of {} runs met the {}",
            self.name,
            self.show(self.median()),
            self.show(self.lowest()),
            self.show(self.highest()),
            self.met(),
            self.values.len(),
            self.goal.text()
        )
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "values": self.values, "median": self.median(), "min": self.lowest(),
            "max": self.highest(), "runs_meeting_goal": self.met(),
        })
    }
}

/// Every figure of the runs, in the order the summary line gives them (MiniLM after the
/// jobs per second, as each run prints it).
pub fn spreads(runs: &[Figures]) -> Vec<Spread> {
    let of = |name, goal, value: &dyn Fn(&Figures) -> Option<f64>| Spread {
        name,
        values: runs.iter().filter_map(value).collect(),
        goal,
    };
    vec![
        of("latency/parts", Goal::AtMost(1.5), &|f| {
            Some(f.latency.ratio())
        }),
        of("jobs_per_s", Goal::AtLeast(10_000.0), &|f| {
            Some(f.throughput.jobs_per_s())
        }),
        of("minilm", Goal::AtLeast(0.9), &|f| {
            f.minilm.as_ref().map(|m| m.ratio())
        }),
        of("batch/raw", Goal::AtMost(1.25), &|f| Some(f.batch.ratio())),
        of("audit/cores", Goal::AtLeast(0.9), &|f| {
            Some(f.audit.ratio())
        }),
        of("ensemble/plain", Goal::AtMost(3.0), &|f| {
            Some(f.ensemble.ratio())
        }),
    ]
}

/// The summary line of the medians (MiniLM is not on it, as it is not on a run's).
pub fn median_summary(spreads: &[Spread]) -> String {
    let m = |name: &str| {
        spreads
            .iter()
            .find(|s| s.name == name)
            .map_or(f64::NAN, Spread::median)
    };
    summary_line(
        m("latency/parts"),
        m("jobs_per_s"),
        m("batch/raw"),
        m("audit/cores"),
        m("ensemble/plain"),
    )
}

/// The block printed after the runs: a heading, a line per figure.
pub fn report(spreads: &[Spread]) -> String {
    let runs = spreads.first().map_or(0, |s| s.values.len());
    let mut out =
        format!("over {runs} runs: median (lowest-highest), and the runs that met the goal\n");
    for s in spreads {
        out.push_str(&s.line());
        out.push('\n');
    }
    out
}

/// The spreads as `--json` gives them, keyed by figure name.
pub fn to_json(spreads: &[Spread]) -> serde_json::Value {
    serde_json::Value::Object(
        spreads
            .iter()
            .map(|s| (s.name.to_string(), s.to_json()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spread(values: &[f64], goal: Goal) -> Spread {
        Spread {
            name: "latency/parts",
            values: values.to_vec(),
            goal,
        }
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(spread(&[3.0, 1.0, 2.0], Goal::AtMost(1.5)).median(), 2.0);
        assert_eq!(
            spread(&[4.0, 1.0, 3.0, 2.0], Goal::AtMost(1.5)).median(),
            2.5
        );
        assert!(spread(&[], Goal::AtMost(1.5)).median().is_nan());
    }

    #[test]
    fn runs_meeting_a_goal_count_its_edge_as_met() {
        let s = spread(&[1.49, 1.5, 1.51, 1.2], Goal::AtMost(1.5));
        assert_eq!(s.met(), 3);
        let s = spread(&[0.89, 0.9, 1.1], Goal::AtLeast(0.9));
        assert_eq!(s.met(), 2);
        assert_eq!(
            s.line(),
            "  latency/parts   0.90 (0.89-1.10)   2 of 3 runs met the goal >= 0.9"
        );
    }

    #[test]
    fn a_figure_no_run_measured_says_so() {
        let s = Spread {
            name: "minilm",
            values: vec![],
            goal: Goal::AtLeast(0.9),
        };
        assert_eq!(s.line(), "  minilm          not measured");
    }
}
