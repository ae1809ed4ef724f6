//! Results of a harness run: the records, the terminal tables with ratios against
//! sealdb-chacha, the JSON file and the SVG plots.

use crate::{Latency, Percentiles, Timeline};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The engine every ratio is taken against.
pub const REFERENCE_ENGINE: &str = "sealdb-chacha";

/// One measured (engine, workload, operation kind, threads) cell.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// Engine name.
    pub engine: String,
    /// Workload label (for example `readrandom`, `ycsb-a/zipf`, `put sync`).
    pub workload: String,
    /// Operation kind within the workload (`read`, `write`, `scan`, `all` …).
    pub op: String,
    /// Threads issuing the operations of the workload.
    pub threads: usize,
    /// Wall-clock time of the measured phase, seconds.
    pub elapsed_s: f64,
    /// Operations of this kind per second over the measured phase.
    pub ops_per_sec: f64,
    /// Latency percentiles, microseconds.
    pub latency_us: Percentiles,
    /// `(nines, µs)` percentile curve (see [`Latency::curve`]).
    pub curve: Vec<(f64, f64)>,
    /// Operations of this kind completed in each second of the run.
    pub per_second: Vec<u64>,
}

impl RunRecord {
    /// A record from a histogram, a timeline and the measured wall-clock time.
    pub fn new(
        engine: &str,
        workload: &str,
        op: &str,
        threads: usize,
        lat: &Latency,
        timeline: &Timeline,
        elapsed_s: f64,
    ) -> Self {
        Self {
            engine: engine.to_string(),
            workload: workload.to_string(),
            op: op.to_string(),
            threads,
            elapsed_s,
            ops_per_sec: lat.count() as f64 / elapsed_s.max(1e-9),
            latency_us: lat.percentiles(),
            curve: lat.curve(),
            per_second: timeline.buckets.clone(),
        }
    }

    fn cell(&self) -> (String, String, usize) {
        (self.workload.clone(), self.op.clone(), self.threads)
    }
}

/// Space and write amplification of one engine after one workload.
#[derive(Debug, Clone, Serialize)]
pub struct SpaceRecord {
    /// Engine name.
    pub engine: String,
    /// Workload label.
    pub workload: String,
    /// Key and value bytes the workload wrote.
    pub user_bytes: u64,
    /// Bytes the process passed to `write` calls meanwhile (`/proc/self/io` `wchar`).
    pub io_write_bytes: Option<u64>,
    /// `io_write_bytes / user_bytes`.
    pub write_amp_io: Option<f64>,
    /// Write amplification as the engine reports it (sealdb only).
    pub write_amp_engine: Option<f64>,
    /// Size of the database directory afterwards.
    pub dir_bytes: u64,
    /// Key and value bytes of the live data set.
    pub live_bytes: u64,
    /// `dir_bytes / live_bytes`.
    pub space_amp: f64,
}

/// Everything a run produced, as written by `--json`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    /// Machine, options and timing of the run.
    pub meta: BTreeMap<String, serde_json::Value>,
    /// Latency and throughput records.
    pub runs: Vec<RunRecord>,
    /// Space and write amplification records.
    pub space: Vec<SpaceRecord>,
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

fn fmt_us(v: f64) -> String {
    if v >= 100_000.0 {
        format!("{:.0}", v)
    } else if v >= 100.0 {
        format!("{:.1}", v)
    } else {
        format!("{:.2}", v)
    }
}

impl Report {
    /// The cells of the latency table, in order: one row per record, grouped by workload and
    /// operation, with the p99 and throughput ratios against sealdb-chacha's row for the
    /// same cell.
    fn latency_rows(&self) -> Vec<[String; 13]> {
        let mut order: Vec<(String, String, usize)> = Vec::new();
        for r in &self.runs {
            if !order.contains(&r.cell()) {
                order.push(r.cell());
            }
        }
        let mut out = Vec::new();
        for cell in order {
            let rows: Vec<&RunRecord> = self.runs.iter().filter(|r| r.cell() == cell).collect();
            let reference = rows.iter().find(|r| r.engine == REFERENCE_ENGINE);
            for r in rows.iter() {
                let p = &r.latency_us;
                let (p99x, tputx) = match reference {
                    Some(base) => (
                        ratio(p.p99, base.latency_us.p99),
                        ratio(r.ops_per_sec, base.ops_per_sec),
                    ),
                    None => ("-".into(), "-".into()),
                };
                out.push([
                    r.workload.clone(),
                    r.op.clone(),
                    r.engine.clone(),
                    r.threads.to_string(),
                    fmt_us(p.p50),
                    fmt_us(p.p90),
                    fmt_us(p.p99),
                    fmt_us(p.p999),
                    fmt_us(p.p9999),
                    fmt_us(p.max),
                    format!("{:.0}", r.ops_per_sec),
                    p99x,
                    tputx,
                ]);
            }
        }
        out
    }

    /// The latency table for the terminal.
    pub fn latency_table(&self) -> String {
        let line = |c: &[String; 13]| {
            format!(
                "{:<22} {:<7} {:<16} {:>3} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>6} {:>6}\n",
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11], c[12]
            )
        };
        let header = [
            "workload", "op", "engine", "thr", "p50 us", "p90 us", "p99 us", "p99.9 us", "p99.99",
            "max us", "ops/s", "p99 x", "tput x",
        ]
        .map(String::from);
        let mut out = line(&header);
        for row in self.latency_rows() {
            out.push_str(&line(&row));
        }
        out
    }

    /// The same table as Markdown (for `docs/benchmarks.md`).
    pub fn latency_markdown(&self) -> String {
        let mut out = String::from(
            "| workload | op | engine | thr | p50 µs | p90 µs | p99 µs | p99.9 µs | p99.99 µs | max µs | ops/s | p99 ×chacha | ops/s ×chacha |\n|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
        );
        for row in self.latency_rows() {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        out
    }

    /// The space and write amplification table.
    pub fn space_table(&self) -> String {
        let mut out = format!(
            "{:<22} {:<16} {:>10} {:>10} {:>9} {:>9} {:>10} {:>9}\n",
            "workload", "engine", "user MiB", "io MiB", "wamp io", "wamp eng", "dir MiB", "space x"
        );
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        for s in &self.space {
            out.push_str(&format!(
                "{:<22} {:<16} {:>10.1} {:>10} {:>9} {:>9} {:>10.1} {:>9.2}\n",
                s.workload,
                s.engine,
                mib(s.user_bytes),
                s.io_write_bytes
                    .map_or("-".into(), |b| format!("{:.1}", mib(b))),
                s.write_amp_io.map_or("-".into(), |w| format!("{w:.2}")),
                s.write_amp_engine.map_or("-".into(), |w| format!("{w:.2}")),
                mib(s.dir_bytes),
                s.space_amp
            ));
        }
        out
    }

    /// Writes the report as pretty JSON.
    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text)
    }

    /// Writes two SVGs per (workload, operation) cell into `dir`: the latency-percentile
    /// curves of every engine, and their throughput per second. Returns the files written.
    pub fn write_plots(&self, dir: &Path) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
        std::fs::create_dir_all(dir)?;
        let mut order: Vec<(String, String, usize)> = Vec::new();
        for r in &self.runs {
            if !order.contains(&r.cell()) {
                order.push(r.cell());
            }
        }
        let mut written = Vec::new();
        for cell in order {
            let rows: Vec<&RunRecord> = self.runs.iter().filter(|r| r.cell() == cell).collect();
            let stem = file_stem(&format!("{}-{}-t{}", cell.0, cell.1, cell.2));
            let title = format!("{} / {} / {} thread(s)", cell.0, cell.1, cell.2);
            let lat = dir.join(format!("{stem}-latency.svg"));
            plot_latency(&lat, &title, &rows)?;
            written.push(lat);
            let tput = dir.join(format!("{stem}-throughput.svg"));
            plot_throughput(&tput, &title, &rows)?;
            written.push(tput);
        }
        Ok(written)
    }
}

/// A file-name-safe version of `s`.
fn file_stem(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

fn engine_color(i: usize, engine: &str) -> plotters::style::RGBColor {
    use plotters::style::RGBColor;
    match engine {
        "sealdb-chacha" => RGBColor(200, 30, 30),
        "sealdb-none" => RGBColor(240, 140, 20),
        "sealdb-aes" => RGBColor(200, 40, 160),
        "fjall" => RGBColor(30, 90, 200),
        "rocksdb" => RGBColor(30, 150, 60),
        _ => [RGBColor(120, 60, 160), RGBColor(90, 90, 90)][i % 2],
    }
}

fn nines_label(x: f64) -> String {
    let q = 100.0 * (1.0 - 10f64.powf(-x));
    if x <= 0.0 {
        "min".into()
    } else if (x - x.round()).abs() < 1e-6 {
        // 1 → 90, 2 → 99, 3 → 99.9 …
        let s = format!("{q:.*}", (x.round() as usize).saturating_sub(2));
        format!("p{s}")
    } else {
        format!("p{q:.1}")
    }
}

/// The legend's sample of a series: a short line in its colour, as drawn.
fn legend_line(
    color: plotters::style::RGBColor,
) -> impl Fn((i32, i32)) -> plotters::element::PathElement<(i32, i32)> {
    use plotters::style::Color;
    move |(x, y)| {
        plotters::element::PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
    }
}

/// Draws the labelled series' legend, boxed on a translucent background, at `position`.
fn draw_legend<'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut plotters::chart::ChartContext<'a, plotters::backend::SVGBackend<'a>, CT>,
    position: plotters::chart::SeriesLabelPosition,
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::style::{BLACK, Color, WHITE};
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn plot_latency(
    path: &Path,
    title: &str,
    rows: &[&RunRecord],
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let xmax = rows
        .iter()
        .filter_map(|r| r.curve.last().map(|p| p.0))
        .fold(1.0f64, f64::max)
        .ceil();
    let (mut ymin, mut ymax) = (f64::MAX, 0.0f64);
    for r in rows {
        for &(_, y) in &r.curve {
            ymin = ymin.min(y);
            ymax = ymax.max(y);
        }
    }
    if ymax <= 0.0 {
        return Ok(());
    }
    let ymin = (ymin.max(0.01) / 1.5).max(0.01);
    let ymax = ymax * 1.5;
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("latency percentiles: {title}"), ("sans-serif", 20))
        .margin(12)
        .margin_right(40)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax, (ymin..ymax).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (µs, log scale)")
        .x_labels((xmax as usize) + 1)
        .x_label_formatter(&|x| nines_label(*x))
        .y_label_formatter(&|y| fmt_us(*y))
        .draw()?;
    for (i, r) in rows.iter().enumerate() {
        let color = engine_color(i, &r.engine);
        chart
            .draw_series(LineSeries::new(
                r.curve.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(format!(
                "{} (p99 {} µs, max {} µs)",
                r.engine,
                fmt_us(r.latency_us.p99),
                fmt_us(r.latency_us.max)
            ))
            .legend(legend_line(color));
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    root.present()?;
    Ok(())
}

fn plot_throughput(
    path: &Path,
    title: &str,
    rows: &[&RunRecord],
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let xmax = rows
        .iter()
        .map(|r| r.per_second.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let ymax = rows
        .iter()
        .flat_map(|r| r.per_second.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1) as f64
        * 1.15;
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("throughput per second: {title}"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..xmax as f64, 0f64..ymax)?;
    chart
        .configure_mesh()
        .x_desc("second of the run")
        .y_desc("operations completed in that second")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    for (i, r) in rows.iter().enumerate() {
        let color = engine_color(i, &r.engine);
        // Each second's count is plotted at that second's midpoint; a final partial second
        // is left out (it would show as a drop that is not one).
        let full = if r.elapsed_s.fract() > 0.0 && r.per_second.len() > 1 {
            r.per_second.len() - 1
        } else {
            r.per_second.len()
        };
        chart
            .draw_series(LineSeries::new(
                r.per_second
                    .iter()
                    .take(full)
                    .enumerate()
                    .map(|(s, c)| (s as f64 + 0.5, *c as f64)),
                color.stroke_width(2),
            ))?
            .label(format!("{} ({:.0} ops/s)", r.engine, r.ops_per_sec))
            .legend(legend_line(color));
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn record(engine: &str, scale: u64) -> RunRecord {
        let mut lat = Latency::new();
        let mut tl = Timeline::default();
        for i in 0..5000u64 {
            lat.record(Duration::from_nanos(1000 + i * scale));
            tl.tick(Duration::from_millis(i / 2));
        }
        RunRecord::new(engine, "readrandom", "read", 1, &lat, &tl, 2.5)
    }

    #[test]
    fn tables_carry_ratios_against_the_reference() {
        let report = Report {
            runs: vec![record("sealdb-chacha", 10), record("fjall", 20)],
            ..Report::default()
        };
        let t = report.latency_table();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].trim_end().ends_with("1.00   1.00"), "{}", lines[1]);
        assert!(lines[2].contains("fjall"));
        let md = report.latency_markdown();
        assert_eq!(md.lines().count(), 4);
        let spaced = Report {
            runs: vec![RunRecord {
                workload: "put sync".into(),
                ..record("sealdb-chacha", 1)
            }],
            ..Report::default()
        };
        let row = spaced
            .latency_markdown()
            .lines()
            .nth(2)
            .unwrap_or_default()
            .to_string();
        assert_eq!(row.matches(" | ").count(), 12, "{row}");
        assert!(row.starts_with("| put sync | read |"), "{row}");
    }

    #[test]
    fn plots_are_svg_with_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let report = Report {
            runs: vec![record("sealdb-chacha", 10), record("sealdb-none", 5)],
            ..Report::default()
        };
        let files = report.write_plots(dir.path()).expect("plots");
        assert_eq!(files.len(), 2);
        for f in files {
            let svg = std::fs::read_to_string(&f).expect("read svg");
            assert!(svg.starts_with("<svg"), "{}", f.display());
            assert!(svg.contains("<text") && svg.contains("sealdb-none"));
        }
    }

    #[test]
    fn labels() {
        assert_eq!(nines_label(0.0), "min");
        assert_eq!(nines_label(1.0), "p90");
        assert_eq!(nines_label(2.0), "p99");
        assert_eq!(nines_label(3.0), "p99.9");
        assert_eq!(file_stem("ycsb-a/zipf read t2"), "ycsb-a-zipf-read-t2");
    }
}
