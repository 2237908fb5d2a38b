//! `--plot FILE.svg`: the latency histogram of a run (up to its p99.9,
//! with the p50 and p99 marked) above its throughput second by second.
//! Drawn with plotters' SVG backend: a self-contained file any browser
//! opens.

use super::stats::Summary;
use plotters::prelude::*;

const WIDTH: u32 = 960;
const HEIGHT: u32 = 720;
const BUCKETS: u64 = 60;

/// The SVG text of the plot of `s`, titled `title`.
pub fn svg(title: &str, s: &Summary) -> Result<String, String> {
    let mut out = String::new();
    draw(&mut out, title, s).map_err(|e| format!("cannot draw the plot: {e}"))?;
    Ok(out)
}

/// Latency buckets `(from ms, to ms, requests)` of equal width from 0 to
/// just past the p99.9 (or the maximum, if that is lower).
pub fn latency_buckets(s: &Summary) -> Vec<(f64, f64, u64)> {
    if s.ops == 0 {
        return Vec::new();
    }
    let top_us = s.latency.value_at_quantile(0.999).max(1);
    let width_us = top_us.div_ceil(BUCKETS).max(1);
    let mut counts = vec![0u64; BUCKETS as usize];
    for v in s.latency.iter_recorded() {
        let i = v.value_iterated_to() / width_us;
        if let Some(n) = counts.get_mut(i as usize) {
            *n += v.count_at_value();
        }
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            let (lo, hi) = (i as u64 * width_us, (i as u64 + 1) * width_us);
            (lo as f64 / 1000.0, hi as f64 / 1000.0, n)
        })
        .collect()
}

fn draw(out: &mut String, title: &str, s: &Summary) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(out, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(HEIGHT / 2);

    let buckets = latency_buckets(s);
    let x_max = buckets.last().map_or(1.0, |b| b.1);
    let y_max = buckets.iter().map(|b| b.2).max().unwrap_or(0).max(1);
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!("{title}: latency of {} requests", s.ops),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, 0u64..(y_max + y_max / 8 + 1))?;
    chart
        .configure_mesh()
        .x_desc(format!(
            "latency in ms (up to p99.9; max {:.2} ms)",
            s.max_ms
        ))
        .y_desc("requests")
        .draw()?;
    chart.draw_series(
        buckets
            .iter()
            .map(|&(lo, hi, n)| Rectangle::new([(lo, 0), (hi, n)], BLUE.mix(0.6).filled())),
    )?;
    for (name, at, color) in [("p50", s.p50_ms, GREEN), ("p99", s.p99_ms, RED)] {
        chart
            .draw_series(LineSeries::new(
                [(at, 0), (at, y_max)],
                color.stroke_width(2),
            ))?
            .label(format!("{name} {at:.2} ms"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;

    let seconds = s.per_second.len().max(1) as u64;
    let most = s.per_second.iter().copied().max().unwrap_or(0).max(1);
    let mut chart = ChartBuilder::on(&bottom)
        .caption(
            format!("throughput: {:.0} requests/s on average", s.throughput),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0u64..seconds, 0u64..(most + most / 8 + 1))?;
    chart
        .configure_mesh()
        .x_desc("second of the run")
        .y_desc("requests completed")
        .draw()?;
    chart.draw_series(LineSeries::new(
        s.per_second.iter().enumerate().map(|(i, &n)| (i as u64, n)),
        BLUE.stroke_width(2),
    ))?;
    chart.draw_series(
        s.per_second
            .iter()
            .enumerate()
            .map(|(i, &n)| Circle::new((i as u64, n), 3, BLUE.filled())),
    )?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::bench::stats::Recorder;
    use std::time::{Duration, Instant};

    fn summary() -> Summary {
        let start = Instant::now();
        let mut r = Recorder::new(start);
        for i in 0..3000u64 {
            r.ok(
                Duration::from_micros(500 + (i * 37) % 4000),
                start + Duration::from_millis(i),
            );
        }
        r.summary(Duration::from_secs(3))
    }

    #[test]
    fn buckets_cover_the_requests_up_to_the_p999() {
        let s = summary();
        let b = latency_buckets(&s);
        assert_eq!(b.len() as u64, BUCKETS);
        let counted: u64 = b.iter().map(|x| x.2).sum();
        assert!(counted >= s.ops * 99 / 100 && counted <= s.ops, "{counted}");
        assert!(b.windows(2).all(|w| w[0].1 == w[1].0), "contiguous");
        assert!(latency_buckets(&Recorder::new(Instant::now()).summary(Duration::ZERO)).is_empty());
    }

    #[test]
    fn the_plot_is_an_svg_document_with_both_charts() {
        let text = svg("kuberaft simple 4 clients", &summary()).unwrap();
        assert!(text.starts_with("<svg"), "{}", &text[..80.min(text.len())]);
        assert!(text.trim_end().ends_with("</svg>"));
        assert!(text.contains("latency of 3000 requests"));
        assert!(text.contains("throughput"));
        // An empty run still draws (empty) charts.
        let empty = svg(
            "empty",
            &Recorder::new(Instant::now()).summary(Duration::ZERO),
        )
        .unwrap();
        assert!(empty.contains("</svg>"));
    }
}
