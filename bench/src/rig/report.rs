//! Results of a run: the JSON document, the terminal table and the SVG plots.

use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde::Serialize;

use super::driver::{Counters, Driver, Path as RigPath, Sample, Scenario};

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// CPU the rig itself spent (getrusage), to document its cost per exchange.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct RigCost {
    pub user_secs: f64,
    pub system_secs: f64,
    pub cpu_us_per_exchange: f64,
    pub cpu_us_per_packet: f64,
    pub bytes_per_subscriber: usize,
    pub max_rss_mib: f64,
}

impl RigCost {
    /// The rig's cost over the measured window: `user_secs`/`system_secs` of CPU (getrusage
    /// deltas) spread over the run's completed exchanges and packets sent plus received.
    pub fn over(
        user_secs: f64,
        system_secs: f64,
        counters: &Counters,
        bytes_per_subscriber: usize,
        max_rss_mib: f64,
    ) -> RigCost {
        let cpu = user_secs + system_secs;
        let per = |n: u64| if n == 0 { 0.0 } else { cpu * 1e6 / n as f64 };
        RigCost {
            user_secs,
            system_secs,
            cpu_us_per_exchange: per(counters.completed),
            // Zero when nothing was sent, whatever was received (as before the refactor).
            cpu_us_per_packet: if counters.sent == 0 {
                0.0
            } else {
                per(counters.sent + counters.received)
            },
            bytes_per_subscriber,
            max_rss_mib,
        }
    }
}

/// The `--json` document.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub scenario: Scenario,
    pub target: String,
    pub path: String,
    pub relays: u32,
    pub subscribers: u32,
    pub pd: bool,
    pub retransmit: bool,
    /// Requested open-loop rate (exchanges started per second), or null for `max`.
    pub rate_target: Option<f64>,
    /// Open-loop rate actually used in the measured phase (renew derives it from T1).
    pub rate_used: Option<f64>,
    pub duration_secs: f64,
    pub warmup_secs: f64,
    pub warmup_bound: u64,
    pub exchanges_per_sec: f64,
    pub transactions_per_sec: f64,
    pub packets_sent_per_sec: f64,
    pub completed: u64,
    pub drops: u64,
    pub no_addrs_avail: u64,
    pub no_prefix_avail: u64,
    pub counters: Counters,
    /// Whole-exchange latency (first transmission of the first message to the final reply).
    pub latency_us: Percentiles,
    /// Per request/reply transaction.
    pub transaction_latency_us: Percentiles,
    pub io_errors: u64,
    pub rig: RigCost,
    pub series: Vec<Sample>,
}

impl Report {
    /// The report of a finished run: everything but the labels comes from the driver.
    /// `cpu_at_measure` is `rusage()` taken when the measured phase began (so warm-up CPU is
    /// not charged to the exchanges); call this right when the run ends.
    pub fn measured(
        tool: &'static str,
        target: String,
        d: &Driver,
        cpu_at_measure: (f64, f64),
        io_errors: u64,
    ) -> Report {
        let (cpu_u1, cpu_s1, rss) = rusage();
        let (cu, cs) = cpu_at_measure;
        let p = d.params();
        let secs = d.measured_secs().max(1e-6);
        let c = d.counters.clone();
        let (path, relays) = match p.path {
            RigPath::Direct => ("direct".to_string(), 0),
            RigPath::Relayed { relays, .. } => ("relayed".to_string(), relays),
        };
        Report {
            tool,
            version: env!("CARGO_PKG_VERSION"),
            scenario: p.scenario,
            target,
            path,
            relays,
            subscribers: p.subscribers,
            pd: p.pd,
            retransmit: p.retransmit,
            rate_target: p.rate,
            rate_used: d.rate(),
            duration_secs: secs,
            warmup_secs: d.warmup_us as f64 / 1e6,
            warmup_bound: d.warmup_bound,
            exchanges_per_sec: c.completed as f64 / secs,
            transactions_per_sec: c.transactions as f64 / secs,
            packets_sent_per_sec: c.sent as f64 / secs,
            completed: c.completed,
            drops: c.drops,
            no_addrs_avail: c.no_addrs_avail,
            no_prefix_avail: c.no_prefix_avail,
            latency_us: Percentiles::of(&d.latency),
            transaction_latency_us: Percentiles::of(&d.transaction_latency),
            io_errors,
            rig: RigCost::over(
                cpu_u1 - cu,
                cpu_s1 - cs,
                &c,
                Driver::bytes_per_subscriber(),
                rss,
            ),
            series: d.series.clone(),
            counters: c,
        }
    }

    /// The end-of-run table printed on the terminal.
    pub fn table(&self) -> String {
        let c = &self.counters;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "scenario {:?} → {} ({}, {} relays), {} subscribers{}{}",
            self.scenario,
            self.target,
            self.path,
            self.relays,
            self.subscribers,
            if self.pd { ", IA_NA+IA_PD" } else { ", IA_NA" },
            if self.retransmit {
                ", RFC 8415 retransmission"
            } else {
                ""
            }
        );
        if self.warmup_secs > 0.0 {
            let _ = writeln!(
                s,
                "warm-up      {:>12.2} s   {} of {} bound",
                self.warmup_secs, self.warmup_bound, self.subscribers
            );
        }
        let rows: [(&str, String); 12] = [
            ("measured", format!("{:.2} s", self.duration_secs)),
            ("exchanges/s", format!("{:.0}", self.exchanges_per_sec)),
            (
                "transactions/s",
                format!("{:.0}", self.transactions_per_sec),
            ),
            ("sent pkts/s", format!("{:.0}", self.packets_sent_per_sec)),
            ("completed", c.completed.to_string()),
            (
                "drops",
                format!("{} ({:.3}%)", c.drops, pct(c.drops, c.sent)),
            ),
            ("retransmits", c.retransmits.to_string()),
            ("NoAddrsAvail", c.no_addrs_avail.to_string()),
            ("NoPrefixAvail", c.no_prefix_avail.to_string()),
            (
                "other",
                format!(
                    "NoBinding {} status {} empty {} unexpected {} malformed {} unfinished {}",
                    c.no_binding,
                    c.other_status,
                    c.empty_replies,
                    c.unexpected,
                    c.malformed,
                    c.unfinished
                ),
            ),
            (
                "latency µs",
                format!(
                    "p50 {} p90 {} p99 {} p99.9 {} max {}",
                    self.latency_us.p50,
                    self.latency_us.p90,
                    self.latency_us.p99,
                    self.latency_us.p999,
                    self.latency_us.max
                ),
            ),
            (
                "rig cost",
                format!(
                    "{:.2} µs CPU/exchange, {} B/subscriber, {:.0} MiB RSS",
                    self.rig.cpu_us_per_exchange,
                    self.rig.bytes_per_subscriber,
                    self.rig.max_rss_mib
                ),
            ),
        ];
        for (k, v) in rows {
            let _ = writeln!(s, "{k:<15} {v}");
        }
        s
    }

    /// Writes `<stem>-rate.svg` and `<stem>-latency.svg` into `dir`.
    pub fn plot(&self, dir: &Path, stem: &str) -> Result<Vec<std::path::PathBuf>, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let rate = dir.join(format!("{stem}-rate.svg"));
        let lat = dir.join(format!("{stem}-latency.svg"));
        let t_max = self.series.last().map_or(1.0, |s| s.t_secs).max(1.0);
        let title = format!("{:?} → {}", self.scenario, self.target);
        let rate_series = [
            (
                "exchanges/s",
                self.series
                    .iter()
                    .map(|s| (s.t_secs, s.exchanges_per_sec))
                    .collect(),
            ),
            (
                "sent packets/s",
                self.series
                    .iter()
                    .map(|s| (s.t_secs, s.sent_per_sec))
                    .collect(),
            ),
        ];
        line_chart(
            &rate,
            &format!("{title}: rate"),
            "per second",
            t_max,
            &rate_series,
        )?;
        let lat_series = [
            (
                "p50 µs",
                self.series
                    .iter()
                    .map(|s| (s.t_secs, s.p50_us as f64))
                    .collect(),
            ),
            (
                "p99 µs",
                self.series
                    .iter()
                    .map(|s| (s.t_secs, s.p99_us as f64))
                    .collect(),
            ),
        ];
        line_chart(&lat, &format!("{title}: latency"), "µs", t_max, &lat_series)?;
        Ok(vec![rate, lat])
    }
}

fn pct(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 * 100.0 / b as f64
    }
}

type Series = (&'static str, Vec<(f64, f64)>);

fn line_chart(
    file: &Path,
    title: &str,
    y_label: &str,
    t_max: f64,
    series: &[Series],
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", file.display());
    let y_max = series
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|p| p.1))
        .fold(1.0f64, f64::max)
        * 1.1;
    let root = SVGBackend::new(file, (900, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..t_max, 0f64..y_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc(y_label)
        .draw()
        .map_err(|e| err(&e))?;
    let colors = [BLUE, RED, GREEN, MAGENTA];
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Process CPU time and peak RSS so far.
pub fn rusage() -> (f64, f64, f64) {
    // SAFETY: getrusage writes into the zero-initialised struct we own; RUSAGE_SELF is valid.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        secs(ru.ru_utime),
        secs(ru.ru_stime),
        ru.ru_maxrss as f64 / 1024.0,
    )
}
