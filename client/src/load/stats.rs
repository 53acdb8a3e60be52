//! What a load run measured: per-call samples summarised into throughput, status counts
//! and latency percentiles, printed as the benchmark's table row or the `load` command's
//! report.

use std::collections::BTreeMap;
use std::time::Duration;

/// What one request's task reports back.
#[derive(Debug, Clone)]
pub struct Sample {
    pub latency: Duration,
    /// HTTP status, 0 when no answer came.
    pub status: u16,
    /// Why the call counts as failed (anything but 200), `None` when it succeeded.
    pub error: Option<String>,
}

/// Latencies and outcomes of one measured run.
#[derive(Debug, Clone)]
pub struct Run {
    pub name: &'static str,
    pub latencies_us: Vec<u64>,
    pub errors: usize,
    pub elapsed: Duration,
    pub first_error: Option<String>,
    /// Calls per HTTP status (0: no answer).
    pub statuses: BTreeMap<u16, usize>,
}

impl Run {
    pub fn requests(&self) -> usize {
        self.latencies_us.len()
    }

    /// Calls answered per second of the run.
    pub fn throughput(&self) -> f64 {
        self.requests() as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at quantile `p` (0.5 = median, 1.0 = max), nearest rank, in ms.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        percentile_of_sorted(&sorted, p)
    }

    /// How many calls were answered `status`.
    pub fn count(&self, status: u16) -> usize {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    /// One row of the benchmark's table (see [`print_header`]).
    pub fn print(&self) {
        println!(
            "{:<28} {:>8} {:>7} {:>10.0} {:>9.2} {:>9.2} {:>9.2}",
            self.name,
            self.requests(),
            self.errors,
            self.throughput(),
            self.percentile_ms(0.50),
            self.percentile_ms(0.99),
            self.percentile_ms(1.0),
        );
        if let Some(e) = &self.first_error {
            println!("    first error: {e}");
        }
    }

    /// The `load` command's report: requests and throughput, status counts, latency
    /// p50/p90/p99/max, and the first failure if any.
    pub fn report(&self) -> String {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(status, n)| match status {
                0 => format!("no answer: {n}"),
                s => format!("{s}: {n}"),
            })
            .collect();
        let mut out = format!(
            "{}: {} requests in {:.2} s, throughput {:.1} req/s\nstatus: {}\nlatency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}\n",
            self.name,
            self.requests(),
            self.elapsed.as_secs_f64(),
            self.throughput(),
            if statuses.is_empty() {
                "none".to_owned()
            } else {
                statuses.join(", ")
            },
            percentile_of_sorted(&sorted, 0.50),
            percentile_of_sorted(&sorted, 0.90),
            percentile_of_sorted(&sorted, 0.99),
            percentile_of_sorted(&sorted, 1.0),
        );
        if let Some(e) = &self.first_error {
            out.push_str(&format!("first error: {e}\n"));
        }
        out
    }
}

fn percentile_of_sorted(sorted_us: &[u64], p: f64) -> f64 {
    match sorted_us.len() {
        0 => 0.0,
        n => sorted_us[((n - 1) as f64 * p).round() as usize] as f64 / 1000.0,
    }
}

/// The header of the benchmark's table.
pub fn print_header() {
    println!(
        "{:<28} {:>8} {:>7} {:>10} {:>9} {:>9} {:>9}",
        "run", "requests", "errors", "req/s", "p50 ms", "p99 ms", "max ms"
    );
}

/// Sums the samples of a run that took `elapsed`.
pub fn summarise(name: &'static str, samples: Vec<Sample>, elapsed: Duration) -> Run {
    let errors = samples.iter().filter(|s| s.error.is_some()).count();
    let first_error = samples.iter().find_map(|s| s.error.clone());
    let mut statuses = BTreeMap::new();
    for s in &samples {
        *statuses.entry(s.status).or_insert(0) += 1;
    }
    Run {
        name,
        latencies_us: samples
            .iter()
            .map(|s| s.latency.as_micros() as u64)
            .collect(),
        errors,
        elapsed,
        first_error,
        statuses,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64, status: u16) -> Sample {
        Sample {
            latency: Duration::from_millis(ms),
            status,
            error: (status != 200).then(|| format!("{status}")),
        }
    }

    #[test]
    fn summary_counts_statuses_and_ranks_latencies() {
        let mut samples: Vec<Sample> = (1..=100).map(|ms| sample(ms, 200)).collect();
        samples.push(sample(500, 401));
        samples.push(sample(1, 0));
        let run = summarise("t", samples, Duration::from_secs(2));
        assert_eq!(run.requests(), 102);
        assert_eq!((run.count(200), run.count(401), run.count(0)), (100, 1, 1));
        assert_eq!(run.errors, 2);
        assert_eq!(run.first_error.as_deref(), Some("401"));
        assert_eq!(run.throughput(), 51.0);
        assert_eq!(run.percentile_ms(1.0), 500.0);
        assert_eq!(run.percentile_ms(0.0), 1.0);
        assert_eq!(run.percentile_ms(0.5), 51.0);
        let report = run.report();
        assert!(
            report.contains("status: no answer: 1, 200: 100, 401: 1"),
            "{report}"
        );
        assert!(report.contains("throughput 51.0 req/s"), "{report}");
        assert!(report.contains("max 500.00"), "{report}");
    }

    #[test]
    fn an_empty_run_reports_zeroes() {
        let run = summarise("t", Vec::new(), Duration::from_secs(1));
        assert_eq!(run.percentile_ms(0.99), 0.0);
        assert!(run.report().contains("status: none"));
    }
}
