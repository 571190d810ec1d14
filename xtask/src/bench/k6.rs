//! Running the k6 scenarios and reading what they measured.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::Context;

use super::platform::Process;

/// Runs the k6 scenarios against the platform.
pub(crate) struct K6 {
    pub(crate) binary: PathBuf,
    pub(crate) scripts: PathBuf,
    pub(crate) work: PathBuf,
    pub(crate) ports: BTreeMap<&'static str, u16>,
    pub(crate) token: String,
    pub(crate) manager_token: String,
}

/// What a k6 run left: its log, and the CPU its platform's processes and k6 itself used.
pub(crate) struct Ran {
    pub(crate) log: PathBuf,
    cpu_by_process: Vec<(String, Duration)>,
    k6_cpu: Duration,
}

/// What one k6 run measured.
#[derive(Debug, Default)]
pub(crate) struct Run {
    pub(crate) offered: u32,
    pub(crate) seconds: u32,
    pub(crate) iterations: u64,
    /// Iterations k6 could not start for want of a free virtual user.
    pub(crate) dropped: u64,
    pub(crate) errors: u64,
    pub(crate) confirmed: u64,
    /// Reserve's durations in the scenario, in milliseconds.
    pub(crate) reserve_ms: Vec<f64>,
    /// Reserve until CONFIRMED, in milliseconds.
    pub(crate) saga_ms: Vec<f64>,
    /// CPU of the platform's processes (services and nats-server) during the run.
    pub(crate) platform_cpu: Duration,
    /// The same, process by process.
    pub(crate) cpu_by_process: Vec<(String, Duration)>,
    /// CPU of k6 itself.
    pub(crate) k6_cpu: Duration,
}

impl K6 {
    pub(crate) fn run(
        &self,
        script: &str,
        rate: u32,
        seconds: u32,
        cars: u32,
        platform: &[&Process],
    ) -> anyhow::Result<Run> {
        let ran = self.run_with(script, rate, seconds, cars, platform, &[], None)?;
        let mut run = read_points(&self.points(script, rate))?;
        run.offered = rate;
        run.seconds = seconds;
        run.platform_cpu = ran.cpu_by_process.iter().map(|(_, cpu)| *cpu).sum();
        run.cpu_by_process = ran.cpu_by_process;
        run.k6_cpu = ran.k6_cpu;
        Ok(run)
    }

    pub(crate) fn points(&self, script: &str, rate: u32) -> PathBuf {
        self.work.join(format!("{script}-{rate}.json"))
    }

    /// Runs `script` with `extra` settings, calling `halfway` once halfway through.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_with(
        &self,
        script: &str,
        rate: u32,
        seconds: u32,
        cars: u32,
        platform: &[&Process],
        extra: &[(&str, &str)],
        mut halfway: Option<&mut dyn FnMut() -> anyhow::Result<()>>,
    ) -> anyhow::Result<Ran> {
        let points = self.points(script, rate);
        let mut command = Command::new(&self.binary);
        command
            .args(["run", "--quiet", "--no-summary", "--out"])
            .arg(format!("json={}", points.display()))
            .arg(self.scripts.join(format!("{script}.js")))
            .env("RATE", rate.to_string())
            .env("DURATION", format!("{seconds}s"))
            .env("CARS", cars.to_string())
            .env("VUS", (rate / 10).clamp(20, 500).to_string())
            .env("MAX_VUS", rate.clamp(100, 1500).to_string())
            .env("TOKEN", &self.token)
            .env("MANAGER_TOKEN", &self.manager_token)
            .env("K6_NO_USAGE_REPORT", "true")
            .envs(extra.iter().copied());
        for (service, port) in &self.ports {
            command.env(
                format!("{}_ADDR", service.to_uppercase()),
                format!("127.0.0.1:{port}"),
            );
        }
        let before: Vec<Duration> = platform.iter().map(|p| p.cpu()).collect();
        let name = format!("k6-{script}-{rate}");
        let k6 = Process::spawn(&name, &mut command, &self.work)?;
        let started = Instant::now();
        let mut k6_cpu = Duration::ZERO;
        let status = loop {
            if let Some(status) = k6.child.borrow_mut().try_wait()? {
                break status;
            }
            if started.elapsed() >= Duration::from_secs(u64::from(seconds) / 2 + 5)
                && let Some(halfway) = halfway.take()
            {
                halfway()?;
            }
            k6_cpu = k6_cpu.max(k6.cpu());
            std::thread::sleep(Duration::from_millis(100));
        };
        let cpu_by_process: Vec<(String, Duration)> = platform
            .iter()
            .zip(before)
            .map(|(p, before)| (p.name.clone(), p.cpu().saturating_sub(before)))
            .collect();
        // k6 fails a run whose thresholds (zero errors) do not hold; the figures still count.
        if !status.success() {
            eprintln!(
                "k6 {script} at {rate}/s ended with {status}: see {}",
                self.work.display()
            );
        }
        Ok(Ran {
            log: self.work.join(format!("{name}.log")),
            cpu_by_process,
            k6_cpu,
        })
    }
}

/// Reads k6's JSON output: one point per line, those of the scenario (not of setup) counted.
fn read_points(path: &Path) -> anyhow::Result<Run> {
    let mut run = Run::default();
    let file = std::fs::File::open(path).with_context(|| format!("k6 wrote no {}", path.display()))?;
    for line in BufReader::new(file).lines() {
        let line = line?;
        let Ok(point) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if point["type"] != "Point" {
            continue;
        }
        let data = &point["data"];
        if data["tags"]["scenario"]
            .as_str()
            .is_none_or(|s| s == "setup" || s.is_empty())
        {
            continue;
        }
        let value = data["value"].as_f64().unwrap_or(0.0);
        let name = data["tags"]["name"].as_str().unwrap_or_default();
        match point["metric"].as_str().unwrap_or_default() {
            "iterations" => run.iterations += 1,
            "dropped_iterations" => run.dropped += value as u64,
            "grpc_errors" => run.errors += value as u64,
            "reservations_confirmed" => run.confirmed += value as u64,
            "saga_duration" => run.saga_ms.push(value),
            "grpc_req_duration" if name.ends_with("/Reserve") => run.reserve_ms.push(value),
            _ => {}
        }
    }
    Ok(run)
}
