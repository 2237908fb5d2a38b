//! `raft bench` end to end against a real 3-replica cluster, as a user runs
//! it: tiny bounded runs in every format whose rows must parse and whose
//! counts must add up, `--plot` writing an SVG document, refusals of a
//! wrong `--groups`; and, when etcd is installed, a tiny `raft bench
//! compare` (1 round, 1 s, 2 workloads) whose files must hold every run.
//! No timing is asserted: only that the figures are there and consistent.

use kuberaft_tests::cli::{self, CliOutput};
use kuberaft_tests::{Cluster, ClusterOptions, Subnet, TestDir, bounded, raft_binary};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(180);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

fn ok(out: &CliOutput) {
    assert_eq!(out.code, Some(0), "raft bench failed:\n{out}");
}

fn number(v: &serde_json::Value, field: &str) -> f64 {
    v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is a number in {v}"))
}

#[test]
fn bench_rows_parse_and_add_up_in_every_format() {
    runtime().block_on(bounded(LIMIT, async {
        let cluster = Cluster::start("bench-formats", ClusterOptions::default())
            .await
            .expect("the cluster starts");

        // JSON, simple mode: clients x requests, all acknowledged.
        let out = cluster
            .raft(&[
                "bench",
                "--clients",
                "4",
                "-n",
                "25",
                "--format",
                "json",
                "--seed",
                "7",
                "--label",
                "e2e",
            ])
            .await
            .expect("raft bench runs");
        ok(&out);
        assert_eq!(out.stdout.lines().count(), 1, "one JSON row: {out}");
        let row: serde_json::Value = serde_json::from_str(&out.stdout).expect("the row is JSON");
        assert_eq!(row["target"], "kuberaft");
        assert_eq!(row["mode"], "simple");
        assert_eq!(row["clients"], 4);
        assert_eq!(row["value_size"], 256);
        assert_eq!(row["groups"], 1);
        assert_eq!(row["label"], "e2e");
        assert_eq!(row["seed"], 7);
        assert_eq!(row["version"], env!("CARGO_PKG_VERSION"));
        let (ops, errors) = (number(&row, "ops"), number(&row, "errors"));
        assert_eq!(ops + errors, 100.0, "every request is counted: {row}");
        assert_eq!(
            errors, 0.0,
            "a healthy cluster acknowledges every write: {row}"
        );
        let (p50, p99) = (number(&row, "p50_ms"), number(&row, "p99_ms"));
        assert!(
            p50 > 0.0 && p50 <= p99 && p99 <= number(&row, "max_ms"),
            "{row}"
        );
        let duration = number(&row, "duration_s");
        assert!(duration > 0.0);
        let throughput = number(&row, "throughput_ops");
        assert!(
            (throughput - ops / duration).abs() <= 0.01 * throughput + 1.0,
            "throughput is ops over duration: {row}"
        );

        // CSV with a header, blast mode, reads on a prefilled key space.
        let out = cluster
            .raft(&[
                "bench",
                "--mode",
                "blast",
                "-n",
                "60",
                "--clients",
                "10",
                "--read-percent",
                "50",
                "--keys",
                "40",
                "--prefill",
                "--format",
                "csv",
                "--header",
            ])
            .await
            .expect("raft bench runs");
        ok(&out);
        let mut reader = csv::Reader::from_reader(out.stdout.as_bytes());
        let header = reader.headers().expect("a header").clone();
        for column in [
            "version", "target", "mode", "clients", "ops", "errors", "p999_ms",
        ] {
            assert!(header.iter().any(|h| h == column), "column {column}: {out}");
        }
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("a row")).collect();
        assert_eq!(rows.len(), 1, "one row: {out}");
        let field = |name: &str| -> String {
            let i = header.iter().position(|h| h == name).expect("known column");
            rows[0][i].to_string()
        };
        assert_eq!(field("mode"), "blast");
        assert_eq!(field("read_percent"), "50");
        assert_eq!(field("endpoints"), cluster.endpoints().join(","));
        let ops: u64 = field("ops").parse().expect("ops is a count");
        let errors: u64 = field("errors").parse().expect("errors is a count");
        assert_eq!(ops + errors, 60, "blast sends exactly -n requests: {out}");
        let without = cluster
            .raft(&["bench", "--clients", "2", "-n", "5", "--format", "csv"])
            .await
            .expect("raft bench runs");
        ok(&without);
        assert_eq!(
            without.stdout.lines().count(),
            1,
            "no header unless asked: {without}"
        );

        // The human table and the plot, bounded by time.
        let svg = cluster.dir().join("bench.svg");
        let svg_arg = svg.to_string_lossy().to_string();
        let out = cluster
            .raft(&[
                "bench",
                "--clients",
                "2",
                "--duration",
                "1s",
                "--plot",
                &svg_arg,
            ])
            .await
            .expect("raft bench runs");
        ok(&out);
        for column in ["OPS/S", "P50 ms", "P99 ms", "P99.9 ms", "MAX ms", "ERRORS"] {
            assert!(out.stdout.contains(column), "{column} in the table: {out}");
        }
        let text = std::fs::read_to_string(&svg).expect("the plot is written");
        let doc = roxmltree::Document::parse(&text).expect("the plot is well-formed XML");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        assert!(text.contains("latency of") && text.contains("throughput"));

        // A cluster is measured as it is: a wrong --groups is refused.
        let out = cluster
            .raft(&["bench", "--groups", "4", "-n", "1", "--clients", "1"])
            .await
            .expect("raft bench runs");
        assert_eq!(out.code, Some(1), "{out}");
        assert!(out.stderr.contains("1 group(s), not --groups 4"), "{out}");
        let out = cluster
            .raft(&["bench", "--read-percent", "120"])
            .await
            .expect("raft bench runs");
        assert_eq!(out.code, Some(1), "{out}");
        assert!(out.stderr.contains("percentage"), "{out}");
    }));
}

/// Whether `program` is on PATH.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

#[test]
fn a_tiny_comparison_with_etcd_writes_every_run_and_the_ratios() {
    if !on_path("etcd") {
        eprintln!(
            "\n######## SKIPPED: etcd is not installed, so `raft bench compare` is not tested ########\n\
             ######## install it with `apt-get install etcd-server` (.ci/run does)          ########\n"
        );
        return;
    }
    runtime().block_on(bounded(LIMIT, async {
        let subnet = Subnet::claim().expect("a subnet");
        let dir = TestDir::new("bench-compare").expect("a test directory");
        let out_dir = dir.path().join("out");
        let out_arg = out_dir.to_string_lossy().to_string();
        let ip = subnet.ip(1).to_string();
        let out = cli::run_within(
            &raft_binary().expect("the raft binary"),
            Some(dir.path()),
            &[
                "bench",
                "compare",
                "--rounds",
                "1",
                "--duration",
                "1s",
                "--warmup",
                "0s",
                "--workloads",
                "write-1,mixed-64",
                "--keys",
                "200",
                "--ip",
                &ip,
                "--out",
                &out_arg,
            ],
            &[],
            Duration::from_secs(150),
        )
        .await
        .expect("raft bench compare runs");
        assert_eq!(out.code, Some(0), "raft bench compare failed:\n{out}");
        let runs = std::fs::read_to_string(out_dir.join("runs.jsonl")).expect("runs.jsonl");
        let rows: Vec<serde_json::Value> = runs
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON row"))
            .collect();
        // 2 workloads x 1 round x 2 systems, kuberaft first (A B).
        let targets: Vec<&str> = rows.iter().filter_map(|r| r["target"].as_str()).collect();
        assert_eq!(targets, ["kuberaft", "etcd", "kuberaft", "etcd"], "{runs}");
        for r in &rows {
            assert!(number(r, "ops") > 0.0, "every run measured something: {r}");
            assert_eq!(
                number(r, "errors"),
                0.0,
                "no errors on healthy clusters: {r}"
            );
        }
        assert_eq!(rows[2]["read_percent"], 90);
        let csv_text = std::fs::read_to_string(out_dir.join("runs.csv")).expect("runs.csv");
        assert_eq!(
            csv_text.lines().count(),
            5,
            "a header and four rows: {csv_text}"
        );
        let summary = std::fs::read_to_string(out_dir.join("summary.md")).expect("summary.md");
        for needle in ["| write-1", "| mixed-64", "median latency at 1 client"] {
            assert!(
                summary.contains(needle),
                "{needle} in the summary:\n{summary}"
            );
        }
        let summary_csv =
            std::fs::read_to_string(out_dir.join("summary.csv")).expect("summary.csv");
        assert_eq!(summary_csv.lines().count(), 3, "{summary_csv}");
        assert!(out.stdout.contains("write-1"), "{out}");
        // Everything it started is stopped: no member is left listening.
        for port in [24000u16, 24001, 24002, 24020, 24021, 24022] {
            assert!(
                std::net::TcpListener::bind((subnet.ip(1), port)).is_ok(),
                "port {port} is free again"
            );
        }
        // The data directories are removed, the logs kept.
        let data = out_dir.join("data");
        assert!(data.join("etcd").join("etcd-1.log").is_file());
        assert!(!data.join("etcd").join("etcd-1").exists());
        assert!(
            data.join("kuberaft-1")
                .join("alpha")
                .join("raft.log")
                .is_file()
        );
        assert!(!data.join("kuberaft-1").join("alpha").join("data").exists());
    }));
}
