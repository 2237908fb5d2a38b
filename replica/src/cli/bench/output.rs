//! How a run is reported: one [`Row`] with the version, every parameter
//! and every figure, printed as a readable table, as CSV (column names on
//! request) or as one line of JSON. Rows of many runs concatenate into one
//! CSV file or one JSON-lines file.

use super::options::{Format, Plan, Stop};
use super::stats::Summary;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// One run, flat: every field is a CSV column and a JSON key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The `raft` that measured (`CARGO_PKG_VERSION`).
    pub version: String,
    pub label: String,
    /// `kuberaft` or `etcd`.
    pub target: String,
    /// The endpoints given, comma-separated.
    pub endpoints: String,
    /// `simple` or `blast`.
    pub mode: String,
    /// simple: clients; blast: requests in flight.
    pub clients: u32,
    pub conns: u32,
    /// simple: per client; blast: in all; 0 for a run bounded by time.
    pub requests: u64,
    /// The time bound in seconds; 0 for a run bounded by count.
    pub duration_limit_s: f64,
    pub value_size: usize,
    pub keys: u64,
    pub read_percent: u8,
    /// `linearizable` or `serializable`.
    pub reads: String,
    /// Raft groups of the cluster measured.
    pub groups: u32,
    pub seed: u64,
    /// Requests that succeeded.
    pub ops: u64,
    /// Requests that failed (`ops + errors` were sent).
    pub errors: u64,
    /// From the first request to the last answer.
    pub duration_s: f64,
    /// `ops / duration_s`.
    pub throughput_ops: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Row {
    /// The row of a run of `plan` against `endpoints` (a cluster of
    /// `groups` groups) that measured `s`.
    pub fn new(plan: &Plan, endpoints: &[String], groups: u32, s: &Summary) -> Row {
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        Row {
            version: env!("CARGO_PKG_VERSION").to_string(),
            label: plan.label.clone(),
            target: plan.target.name().to_string(),
            endpoints: endpoints.join(","),
            mode: plan.mode.name().to_string(),
            clients: plan.clients,
            conns: plan.conns,
            requests: match plan.stop {
                Stop::Requests(n) => n,
                Stop::Duration(_) => 0,
            },
            duration_limit_s: match plan.stop {
                Stop::Requests(_) => 0.0,
                Stop::Duration(d) => d.as_secs_f64(),
            },
            value_size: plan.workload.value_size,
            keys: plan.workload.keys,
            read_percent: plan.workload.read_percent,
            reads: plan.workload.reads.name().to_string(),
            groups,
            seed: plan.seed,
            ops: s.ops,
            errors: s.errors,
            duration_s: round(s.duration.as_secs_f64()),
            throughput_ops: round(s.throughput),
            p50_ms: round(s.p50_ms),
            p90_ms: round(s.p90_ms),
            p99_ms: round(s.p99_ms),
            p999_ms: round(s.p999_ms),
            max_ms: round(s.max_ms),
            mean_ms: round(s.mean_ms),
        }
    }
}

/// The text printed for `row` in `format` (ending in a newline); `header`
/// puts the column names first (CSV only).
pub fn render(row: &Row, s: &Summary, format: Format, header: bool) -> String {
    match format {
        Format::Human => human(row, s),
        Format::Json => {
            let mut line = serde_json::to_string(row).expect("a row is plain data");
            line.push('\n');
            line
        }
        Format::Csv => csv_rows(std::slice::from_ref(row), header),
    }
}

/// `rows` as CSV, with the column names first if `header`.
pub fn csv_rows(rows: &[Row], header: bool) -> String {
    let mut w = csv::WriterBuilder::new()
        .has_headers(header)
        .from_writer(Vec::new());
    for row in rows {
        w.serialize(row).expect("a row is plain data");
    }
    let bytes = w.into_inner().expect("writing to memory cannot fail");
    String::from_utf8(bytes).expect("CSV of UTF-8 fields is UTF-8")
}

fn human(row: &Row, s: &Summary) -> String {
    let mut out = String::new();
    let reads = match row.read_percent {
        0 => "writes only".to_string(),
        100 => format!("{} reads only", row.reads),
        p => format!("{p}% {} reads, {}% writes", row.reads, 100 - p),
    };
    let bound = if row.requests > 0 {
        format!(
            "{} requests{}",
            row.requests,
            if row.mode == "simple" {
                " per client"
            } else {
                " in all"
            }
        )
    } else {
        format!("{} s", row.duration_limit_s)
    };
    let _ = writeln!(
        out,
        "raft bench {}: {} mode, {} {} on {} connection{}, {bound}",
        row.version,
        row.mode,
        row.clients,
        if row.mode == "simple" {
            "clients"
        } else {
            "in flight"
        },
        row.conns,
        if row.conns == 1 { "" } else { "s" },
    );
    let _ = writeln!(
        out,
        "  {} at {} ({} group{}); {}-byte values, {} keys, {reads}",
        row.target,
        row.endpoints,
        row.groups,
        if row.groups == 1 { "" } else { "s" },
        row.value_size,
        row.keys,
    );
    let _ = writeln!(
        out,
        "{:<10} {:>9} {:>7} {:>8} {:>10} {:>8} {:>8} {:>8} {:>9} {:>8}",
        "TARGET",
        "OPS",
        "ERRORS",
        "SECONDS",
        "OPS/S",
        "P50 ms",
        "P90 ms",
        "P99 ms",
        "P99.9 ms",
        "MAX ms"
    );
    let _ = writeln!(
        out,
        "{:<10} {:>9} {:>7} {:>8.2} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>8.2}",
        row.target,
        row.ops,
        row.errors,
        row.duration_s,
        row.throughput_ops,
        row.p50_ms,
        row.p90_ms,
        row.p99_ms,
        row.p999_ms,
        row.max_ms
    );
    for (message, n) in &s.error_kinds {
        let _ = writeln!(out, "  {n} × error: {message}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::bench::options::Mode;
    use crate::cli::bench::stats::Recorder;
    use crate::cli::bench::target::TargetKind;
    use crate::cli::bench::workload::{ReadConsistency, Workload};
    use std::time::{Duration, Instant};

    fn plan() -> Plan {
        Plan {
            target: TargetKind::Etcd,
            mode: Mode::Simple,
            clients: 4,
            conns: 2,
            stop: Stop::Requests(25),
            workload: Workload {
                keys: 1000,
                value_size: 256,
                read_percent: 10,
                reads: ReadConsistency::Linearizable,
            },
            groups: None,
            prefill: false,
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(10),
            seed: 9,
            format: Format::Csv,
            header: true,
            plot: None,
            label: "a, \"quoted\" label".into(),
        }
    }

    fn summary() -> Summary {
        let start = Instant::now();
        let mut r = Recorder::new(start);
        for i in 1..=99u64 {
            r.ok(Duration::from_millis(i), start);
        }
        r.error("boom", start);
        r.summary(Duration::from_secs(2))
    }

    fn row() -> Row {
        Row::new(
            &plan(),
            &["127.0.0.1:2379".into(), "127.0.0.1:2380".into()],
            1,
            &summary(),
        )
    }

    #[test]
    fn the_json_row_has_the_promised_fields() {
        let text = render(&row(), &summary(), Format::Json, false);
        assert!(text.ends_with('\n') && text.lines().count() == 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for field in [
            "version",
            "target",
            "mode",
            "clients",
            "value_size",
            "ops",
            "errors",
            "duration_s",
            "throughput_ops",
            "p50_ms",
            "p99_ms",
            "p90_ms",
            "p999_ms",
            "max_ms",
            "reads",
            "read_percent",
            "keys",
            "groups",
            "conns",
            "label",
            "seed",
        ] {
            assert!(v.get(field).is_some(), "no {field} in {text}");
        }
        assert_eq!(v["target"], "etcd");
        assert_eq!(v["ops"], 99);
        assert_eq!(v["errors"], 1);
        assert_eq!(v["throughput_ops"], 49.5);
        let back: Row = serde_json::from_value(v).unwrap();
        assert_eq!(back, row());
    }

    #[test]
    fn csv_has_a_header_on_request_and_quotes_what_needs_it() {
        let with = render(&row(), &summary(), Format::Csv, true);
        let without = render(&row(), &summary(), Format::Csv, false);
        assert_eq!(with.lines().count(), 2);
        assert_eq!(without.lines().count(), 1);
        assert!(with.starts_with("version,label,target,endpoints,mode,clients,"));
        assert_eq!(with.lines().nth(1), without.lines().next());
        let mut reader = csv::Reader::from_reader(with.as_bytes());
        let rows: Vec<Row> = reader.deserialize().map(Result::unwrap).collect();
        assert_eq!(rows, vec![row()]);
        assert_eq!(rows[0].endpoints, "127.0.0.1:2379,127.0.0.1:2380");
        assert_eq!(rows[0].label, "a, \"quoted\" label");
    }

    #[test]
    fn the_table_shows_the_figures_and_the_errors() {
        let text = render(&row(), &summary(), Format::Human, false);
        assert!(
            text.contains("P99.9 ms") && text.contains("MAX ms"),
            "{text}"
        );
        assert!(text.contains("10% linearizable reads"), "{text}");
        assert!(text.contains("1 × error: boom"), "{text}");
        assert!(text.contains("25 requests per client"), "{text}");
    }
}
