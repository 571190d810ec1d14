//! The report's sections.

use std::{fmt::Write as _, process::Command, time::Duration};

use super::{
    Options, SERVICES,
    k6::Run,
    platform::{Memory, Process},
};

fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ms(value: Option<f64>) -> String {
    value.map_or("n/a".to_owned(), |v| format!("{v:.1} ms"))
}

pub(crate) fn report_section(
    options: &Options,
    services: &[(Process, Duration)],
    restarts: &[Duration],
    idle_memory: &[Memory],
    health: &Run,
    saga: &Run,
    saturated: &Run,
) -> String {
    let per = |cpu: Duration, count: u64| (count > 0).then(|| cpu.as_secs_f64() * 1e6 / count as f64);
    let per_check = per(health.platform_cpu, health.iterations);
    let per_reservation = per(saga.platform_cpu, saga.confirmed);
    let ratio = match (per_reservation, per_check) {
        (Some(r), Some(h)) if h > 0.0 => format!("{:.0}×", r / h),
        _ => "n/a".to_owned(),
    };
    let us = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.0} µs"));

    let mut s = String::new();
    let _ = writeln!(s, "### {}: {}", options.backend.name(), machine());
    let _ = writeln!(s);
    let _ = writeln!(s, "| figure | measured | target |");
    let _ = writeln!(s, "|---|---|---|");
    let _ = writeln!(
        s,
        "| confirmed reservations/s, {}/s offered for {} s | {:.0} ({} confirmed of {} started, {} not started, {} errors) | ≥ 2,000 |",
        saturated.offered,
        saturated.seconds,
        saturated.confirmed as f64 / saturated.seconds as f64,
        saturated.confirmed,
        saturated.iterations,
        saturated.dropped,
        saturated.errors
    );
    let _ = writeln!(
        s,
        "| Reserve p50 / p99 at {}/s | {} / {} | p99 ≤ 5 ms |",
        saga.offered,
        ms(percentile(&saga.reserve_ms, 50.0)),
        ms(percentile(&saga.reserve_ms, 99.0))
    );
    let _ = writeln!(
        s,
        "| saga (Reserve → CONFIRMED) p50 / p99 at {}/s | {} / {} ({} confirmed of {} started, {} not started, {} errors) | p99 ≤ 25 ms |",
        saga.offered,
        ms(percentile(&saga.saga_ms, 50.0)),
        ms(percentile(&saga.saga_ms, 99.0)),
        saga.confirmed,
        saga.iterations,
        saga.dropped,
        saga.errors
    );
    let _ = writeln!(
        s,
        "| CPU per confirmed reservation ÷ per health check, all processes, at {}/s | {ratio} ({} / {}) | ≤ 25× |",
        saga.offered,
        us(per_reservation),
        us(per_check)
    );
    let by_process: Vec<String> = saga
        .cpu_by_process
        .iter()
        .map(|(name, cpu)| format!("{name} {}", us(per(*cpu, saga.confirmed))))
        .collect();
    let _ = writeln!(
        s,
        "| CPU per confirmed reservation by process, at {}/s | {} | |",
        saga.offered,
        by_process.join(" · ")
    );
    let _ = writeln!(
        s,
        "| k6's own CPU, share of the machine: health / saga / saturation | {} / {} / {} | |",
        share(health),
        share(saga),
        share(saturated)
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| service | start to SERVING, new database | start to SERVING, again | idle RSS (its own memory) |"
    );
    let _ = writeln!(s, "|---|---|---|---|");
    for (((service, (_, first)), again), memory) in
        SERVICES.iter().zip(services).zip(restarts).zip(idle_memory)
    {
        let _ = writeln!(
            s,
            "| {service} | {} ms | {} ms | {:.1} MB ({:.1} MB) |",
            first.as_millis(),
            again.as_millis(),
            memory.rss_kib as f64 / 1024.0,
            memory.anon_kib as f64 / 1024.0
        );
    }
    s
}

/// k6's CPU as a share of the machine's CPU over the run.
fn share(run: &Run) -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let wall = run.seconds as f64 * cores;
    format!("{:.0} %", run.k6_cpu.as_secs_f64() / wall * 100.0)
}

/// The machine and build the figures come from.
pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "{date}, commit {commit}, {cores} cores of {model}, Linux {}",
        kernel.trim()
    )
}

/// `report` with the section of `key` (between its markers) replaced by `section`, or
/// appended when it has none yet.
pub(crate) fn replace_section(report: &str, key: &str, section: &str) -> String {
    let begin = format!("<!-- bench {key} -->");
    let end = format!("<!-- end bench {key} -->");
    let block = format!("{begin}\n{section}{end}");
    match (report.find(&begin), report.find(&end)) {
        (Some(start), Some(stop)) if start < stop => {
            format!("{}{block}{}", &report[..start], &report[stop + end.len()..])
        }
        _ if report.is_empty() => format!("# Benchmark\n\n{block}\n"),
        _ => format!("{}\n{block}\n", report.trim_end()),
    }
}
