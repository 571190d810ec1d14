//! `cargo xtask bench [--backend sqlite|postgres] [--rate N] [--seconds N] [--saturation N]`:
//! the platform measured the way its users load it, on the machine at hand. With
//! `--kill <service>` it measures nothing but runs the saga with that service SIGKILLed and
//! restarted halfway, then checks every reservation the platform acknowledged.
//!
//! It builds the release binary, starts a private nats-server and each service as its own
//! process (authentication on, as deployed), and drives them with the k6 scenarios of
//! `loadtest/k6`. CPU time comes from the kernel's per-thread scheduler statistics of every
//! platform process, memory from `/proc/<pid>/status`. The figures replace this backend's
//! section of `loadtest/REPORT.md`; everything else in the report is left as written.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{BufRead, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use rentacar_auth::{DEV_ISSUER, Issuer, issuer::JWKS_FILE};

/// The services in the order they start: reservation calls payment, so payment comes first.
const SERVICES: [&str; 4] = ["payment", "fleet", "mypage", "reservation"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        }
    }
}

/// What to run, from the command line.
#[derive(Debug)]
struct Options {
    backend: Backend,
    /// The offered rate of the latency and CPU runs, per second.
    rate: u32,
    /// How long each run offers its load.
    seconds: u32,
    /// The offered rate of the saturation run: more than the platform can take.
    saturation: u32,
    /// Instead of the measurements: the saga at `rate` with this service SIGKILLed and
    /// restarted halfway, then a check of what the platform kept.
    kill: Option<String>,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut options = Self {
            backend: Backend::Sqlite,
            rate: 200,
            seconds: 20,
            saturation: 3000,
            kill: None,
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let value = args.next().with_context(|| format!("{flag} needs a value"))?;
            let number = || {
                value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("{flag} takes a whole number above 0, not {value}"))
            };
            match flag.as_str() {
                "--backend" => {
                    options.backend = match value.as_str() {
                        "sqlite" => Backend::Sqlite,
                        "postgres" => Backend::Postgres,
                        _ => bail!("--backend is sqlite or postgres, not {value}"),
                    }
                }
                "--rate" => options.rate = number()?,
                "--seconds" => options.seconds = number()?,
                "--saturation" => options.saturation = number()?,
                "--kill" if SERVICES.contains(&value.as_str()) => options.kill = Some(value.clone()),
                "--kill" => bail!("--kill takes one of {SERVICES:?}, not {value}"),
                _ => bail!(
                    "unknown option {flag}; usage: cargo xtask bench [--backend sqlite|postgres] [--rate N] [--seconds N] [--saturation N] [--kill SERVICE]"
                ),
            }
        }
        Ok(options)
    }
}

pub fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let options = Options::parse(args)?;
    // Built as the image builds it, but not stripped, so that a profiler can name functions.
    crate::run(
        Command::new("cargo")
            .args(["build", "--release", "--locked", "--bin", "rentacar"])
            .current_dir(root),
    )?;
    let binary = root.join("target/release/rentacar");
    let tools = crate::install(root, &["nats-server", "k6"])?;
    let work = root.join("target/bench");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;

    let issuer = Issuer::load_or_create(&work.join("auth"), DEV_ISSUER)?;
    let token = issuer.token("bench-customer", false, Duration::from_secs(4 * 3600));
    let manager_token = issuer.token("bench-manager", true, Duration::from_secs(4 * 3600));

    let databases = Databases::create(options.backend, &work)?;
    let nats_port = free_port()?;
    let nats = Process::spawn(
        "nats-server",
        Command::new(tools.join("nats-server"))
            .args(["-js", "-a", "127.0.0.1", "-p", &nats_port.to_string(), "-sd"])
            .arg(work.join("nats")),
        &work,
    )?;
    wait_for_port(nats_port)?;

    let service_command = |service: &str, port: u16, payment: Option<u16>| {
        let mut command = Command::new(&binary);
        command
            .args(["serve", service])
            .env("RENTACAR_LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("RENTACAR_DATABASE_URL", databases.url(service))
            .env("RENTACAR_NATS_URL", format!("nats://127.0.0.1:{nats_port}"))
            .env("RENTACAR_AUTH_JWKS", work.join("auth").join(JWKS_FILE))
            .env("RENTACAR_AUTH_ISSUER", DEV_ISSUER)
            .env("RENTACAR_DRAIN_MS", "0")
            .env("RUST_LOG", "warn");
        if let Some(payment) = payment {
            command.env("RENTACAR_PAYMENT_URL", format!("http://127.0.0.1:{payment}"));
        }
        command
    };
    let mut services = Vec::new();
    let mut ports = BTreeMap::new();
    for service in SERVICES {
        let port = free_port()?;
        let mut command = service_command(service, port, ports.get("payment").copied());
        let started = Instant::now();
        let process = Process::spawn(service, &mut command, &work)?;
        // A runtime of its own, dropped with its connection: an idle connection left open
        // would hold up the service's graceful shutdown.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(serving(port)).with_context(|| {
            format!(
                "{service} did not start; see {}",
                work.join(format!("{service}.log")).display()
            )
        })?;
        let start = started.elapsed();
        ports.insert(service, port);
        services.push((process, start));
    }
    // Idle: after start-up work (stream and consumer creation) has settled.
    std::thread::sleep(Duration::from_secs(3));
    let idle_rss: Vec<u64> = services.iter().map(|(p, _)| p.rss_kib()).collect();

    let platform: Vec<&Process> = services
        .iter()
        .map(|(p, _)| p)
        .chain(std::iter::once(&nats))
        .collect();
    let k6 = K6 {
        binary: tools.join("k6"),
        scripts: root.join("loadtest/k6"),
        work: work.clone(),
        ports: ports.clone(),
        token,
        manager_token,
        last_cpu: Default::default(),
    };

    if let Some(victim) = &options.kill {
        let index = SERVICES.iter().position(|s| s == victim).expect("checked");
        let port = ports[victim.as_str()];
        let payment = (victim != "payment").then(|| ports["payment"]);
        println!(
            "the saga at {}/s for {} s, {victim} killed halfway",
            options.rate, options.seconds
        );
        let mut kill_and_restart = || -> anyhow::Result<()> {
            let (victim_process, _) = &services[index];
            println!("SIGKILL {victim}");
            victim_process.kill();
            let mut command = service_command(victim, port, payment);
            let restarted = Process::spawn(&format!("{victim}-restarted"), &mut command, &work)?;
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(serving(port))?;
            println!("{victim} restarted");
            services[index].0 = restarted;
            Ok(())
        };
        let cars = options.rate * options.seconds / 300 + 10;
        let log = k6.run_with(
            "saga",
            options.rate,
            options.seconds,
            cars,
            &[],
            &[("PRINT_RESERVED", "1")],
            Some(&mut kill_and_restart),
        )?;
        let acknowledged = acknowledged_ids(&log)?;
        let verdict = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(check_kept(&ports, &k6.token, &acknowledged))?;
        for (process, _) in &services {
            process.stop();
        }
        nats.stop();
        databases.drop_all();
        let section = format!(
            "### {}, {victim} SIGKILLed and restarted halfway: {}\n\n{verdict}\n",
            options.backend.name(),
            machine()
        );
        println!("\n{section}");
        let report = root.join("loadtest/REPORT.md");
        let existing = std::fs::read_to_string(&report).unwrap_or_default();
        let key = format!("{} kill {victim}", options.backend.name());
        std::fs::write(&report, replace_section(&existing, &key, &section))?;
        if !verdict.kept_everything() {
            bail!("the platform lost or broke something; see {}", report.display());
        }
        return Ok(());
    }

    println!("health checks at {}/s for {} s", options.rate, options.seconds);
    let health = k6.run("health", options.rate, options.seconds, 10, &platform)?;
    println!("the saga at {}/s for {} s", options.rate, options.seconds);
    let cars = (options.rate * options.seconds / 300 + 10).to_string();
    let saga = k6.run("saga", options.rate, options.seconds, cars.parse()?, &platform)?;
    println!(
        "the saga offered {}/s for {} s",
        options.saturation, options.seconds
    );
    let saturated = k6.run(
        "saga",
        options.saturation,
        options.seconds,
        options.saturation * options.seconds / 300 + 10,
        &platform,
    )?;

    for (process, _) in &services {
        process.stop();
    }
    nats.stop();
    databases.drop_all();

    let section = report_section(&options, &services, &idle_rss, &health, &saga, &saturated);
    println!("\n{section}");
    let report = root.join("loadtest/REPORT.md");
    let existing = std::fs::read_to_string(&report).unwrap_or_default();
    std::fs::write(
        &report,
        replace_section(&existing, options.backend.name(), &section),
    )?;
    println!("written to {}", report.display());
    Ok(())
}

/// A child process of the platform, killed when dropped.
struct Process {
    name: String,
    child: std::cell::RefCell<Child>,
}

impl Process {
    fn spawn(name: &str, command: &mut Command, work: &Path) -> anyhow::Result<Self> {
        let log = std::fs::File::create(work.join(format!("{name}.log")))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Self {
            name: name.to_owned(),
            child: child.into(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.borrow().id()
    }

    /// CPU time used so far by all of the process's threads.
    fn cpu(&self) -> Duration {
        cpu_of(self.pid())
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// SIGKILL, then a wait for the exit.
    fn kill(&self) {
        let mut child = self.child.borrow_mut();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGTERM, then a wait for the exit.
    fn stop(&self) {
        let _ = Command::new("kill").arg(self.pid().to_string()).status();
        let _ = self.child.borrow_mut().wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let mut child = self.child.borrow_mut();
        if matches!(child.try_wait(), Ok(None)) {
            eprintln!("stopping {}", self.name);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The CPU time of every thread of `pid` (the first field of each thread's schedstat, in
/// nanoseconds: finer than the clock ticks of `/proc/<pid>/stat`).
fn cpu_of(pid: u32) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let nanos: u64 = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

/// Each service's database: SQLite files in the work folder, or fresh PostgreSQL databases
/// (at `RENTACAR_BENCH_POSTGRES_URL`, default the local server) dropped afterwards.
struct Databases {
    backend: Backend,
    work: PathBuf,
    admin_url: String,
    prefix: String,
}

impl Databases {
    fn create(backend: Backend, work: &Path) -> anyhow::Result<Self> {
        let admin_url = std::env::var("RENTACAR_BENCH_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let databases = Self {
            backend,
            work: work.to_owned(),
            admin_url,
            prefix: format!("rentacar_bench_{}", std::process::id()),
        };
        if backend == Backend::Postgres {
            for service in SERVICES {
                databases.psql(&format!("CREATE DATABASE {}_{service}", databases.prefix))?;
            }
        }
        Ok(databases)
    }

    fn url(&self, service: &str) -> String {
        match self.backend {
            Backend::Sqlite => format!("sqlite://{}/{service}.db?mode=rwc", self.work.display()),
            Backend::Postgres => {
                let base = self
                    .admin_url
                    .rsplit_once('/')
                    .map_or(&*self.admin_url, |(base, _)| base);
                format!("{base}/{}_{service}", self.prefix)
            }
        }
    }

    fn psql(&self, sql: &str) -> anyhow::Result<()> {
        let output = Command::new("psql")
            .args([&self.admin_url, "-v", "ON_ERROR_STOP=1", "-qc", sql])
            .output()
            .context("psql is needed for --backend postgres")?;
        if !output.status.success() {
            bail!("{sql}: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(())
    }

    fn drop_all(&self) {
        if self.backend == Backend::Postgres {
            for service in SERVICES {
                if let Err(err) = self.psql(&format!("DROP DATABASE IF EXISTS {}_{service}", self.prefix)) {
                    eprintln!("{err}");
                }
            }
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_for_port(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on port {port}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Asks the service's health every millisecond until it says SERVING.
async fn serving(port: u16) -> anyhow::Result<()> {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?;
    loop {
        if let Ok(channel) = endpoint.connect().await {
            let mut client = HealthClient::new(channel);
            loop {
                match client.check(HealthCheckRequest::default()).await {
                    Ok(answer) if answer.get_ref().status() == ServingStatus::Serving => return Ok(()),
                    Ok(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                    Err(_) => break,
                }
            }
        }
        if Instant::now() > deadline {
            bail!("not SERVING after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Runs the k6 scenarios against the platform.
struct K6 {
    binary: PathBuf,
    scripts: PathBuf,
    work: PathBuf,
    ports: BTreeMap<&'static str, u16>,
    token: String,
    manager_token: String,
    /// CPU of the platform's processes and of k6 in the last run.
    last_cpu: std::cell::Cell<(Vec<(String, Duration)>, Duration)>,
}

/// What one k6 run measured.
#[derive(Debug, Default)]
struct Run {
    offered: u32,
    seconds: u32,
    iterations: u64,
    /// Iterations k6 could not start for want of a free virtual user.
    dropped: u64,
    errors: u64,
    confirmed: u64,
    /// Reserve's durations in the scenario, in milliseconds.
    reserve_ms: Vec<f64>,
    /// Reserve until CONFIRMED, in milliseconds.
    saga_ms: Vec<f64>,
    /// CPU of the platform's processes (services and nats-server) during the run.
    platform_cpu: Duration,
    /// The same, process by process.
    cpu_by_process: Vec<(String, Duration)>,
    /// CPU of k6 itself.
    k6_cpu: Duration,
}

impl K6 {
    fn run(
        &self,
        script: &str,
        rate: u32,
        seconds: u32,
        cars: u32,
        platform: &[&Process],
    ) -> anyhow::Result<Run> {
        self.run_with(script, rate, seconds, cars, platform, &[], None)?;
        let mut run = read_points(&self.points(script, rate))?;
        run.offered = rate;
        run.seconds = seconds;
        let cpu = self.last_cpu.take();
        run.platform_cpu = cpu.0.iter().map(|(_, cpu)| *cpu).sum();
        run.cpu_by_process = cpu.0;
        run.k6_cpu = cpu.1;
        Ok(run)
    }

    fn points(&self, script: &str, rate: u32) -> PathBuf {
        self.work.join(format!("{script}-{rate}.json"))
    }

    /// Runs `script` with `extra` settings, calling `halfway` once halfway through, and
    /// returns the path of k6's log.
    #[allow(clippy::too_many_arguments)]
    fn run_with(
        &self,
        script: &str,
        rate: u32,
        seconds: u32,
        cars: u32,
        platform: &[&Process],
        extra: &[(&str, &str)],
        mut halfway: Option<&mut dyn FnMut() -> anyhow::Result<()>>,
    ) -> anyhow::Result<PathBuf> {
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
        self.last_cpu.set((cpu_by_process, k6_cpu));
        Ok(self.work.join(format!("{name}.log")))
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

fn report_section(
    options: &Options,
    services: &[(Process, Duration)],
    idle_rss: &[u64],
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
    let _ = writeln!(s, "| service | start to SERVING | idle RSS |");
    let _ = writeln!(s, "|---|---|---|");
    for ((process, start), rss) in services.iter().zip(idle_rss) {
        let _ = writeln!(
            s,
            "| {} | {} ms | {:.1} MB |",
            process.name,
            start.as_millis(),
            *rss as f64 / 1024.0
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
fn machine() -> String {
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
fn replace_section(report: &str, key: &str, section: &str) -> String {
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

/// The reservations k6 saw acknowledged (saga.js with `PRINT_RESERVED=1` logs each).
fn acknowledged_ids(log: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| line.split("msg=\"reserved ").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect())
}

/// What the platform kept of the reservations it acknowledged.
#[derive(Debug, Default)]
struct Verdict {
    acknowledged: usize,
    confirmed: usize,
    rejected: usize,
    /// Acknowledged, but unknown to reservation now.
    missing: Vec<String>,
    /// Still PAID (or otherwise not final) once the platform had time to settle.
    unsettled: Vec<String>,
    /// A car's day held by two confirmed reservations.
    double_booked: Vec<String>,
    /// A confirmed reservation not charged its price, or a rejected one not refunded.
    money_mismatch: Vec<String>,
}

impl Verdict {
    fn kept_everything(&self) -> bool {
        self.missing.is_empty()
            && self.unsettled.is_empty()
            && self.double_booked.is_empty()
            && self.money_mismatch.is_empty()
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sample = |ids: &[String]| match ids.first() {
            Some(first) => format!("{} (for example {first})", ids.len()),
            None => "0".to_owned(),
        };
        writeln!(f, "| check | result |")?;
        writeln!(f, "|---|---|")?;
        writeln!(
            f,
            "| reservations acknowledged by Reserve | {} ({} CONFIRMED, {} REJECTED) |",
            self.acknowledged, self.confirmed, self.rejected
        )?;
        writeln!(f, "| acknowledged but missing | {} |", sample(&self.missing))?;
        writeln!(f, "| not final after settling | {} |", sample(&self.unsettled))?;
        writeln!(
            f,
            "| a car's day booked twice | {} |",
            sample(&self.double_booked)
        )?;
        writeln!(
            f,
            "| money not matching (confirmed not charged its price, rejected not refunded) | {} |",
            sample(&self.money_mismatch)
        )
    }
}

/// Asks reservation and payment, as the customer, about every acknowledged reservation,
/// once none of them is still on its way (or after two minutes).
async fn check_kept(
    ports: &BTreeMap<&'static str, u16>,
    token: &str,
    acknowledged: &[String],
) -> anyhow::Result<Verdict> {
    use rentacar_proto::{
        payment::{GetPaymentRequest, PaymentStatus, payment_service_client::PaymentServiceClient},
        reservation::{
            GetReservationRequest, Reservation, ReservationStatus,
            reservation_service_client::ReservationServiceClient,
        },
    };
    let address = |service: &str| format!("http://127.0.0.1:{}", ports[service]);
    let mut reservations = ReservationServiceClient::connect(address("reservation")).await?;
    let mut payments = PaymentServiceClient::connect(address("payment")).await?;
    fn signed<T>(token: &str, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let value = format!("Bearer {token}").parse().expect("a token is ASCII");
        request.metadata_mut().insert("authorization", value);
        request
    }

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut verdict = Verdict {
        acknowledged: acknowledged.len(),
        ..Verdict::default()
    };
    let mut found: Vec<Reservation> = Vec::new();
    for id in acknowledged {
        loop {
            let answer = reservations
                .get_reservation(signed(
                    token,
                    GetReservationRequest {
                        reservation_id: id.clone(),
                    },
                ))
                .await;
            match answer {
                Ok(response) => {
                    let reservation = response.into_inner().reservation.unwrap_or_default();
                    if reservation.status() == ReservationStatus::Paid && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    found.push(reservation);
                }
                Err(status) if status.code() == tonic::Code::NotFound => verdict.missing.push(id.clone()),
                Err(status) => bail!("GetReservation {id}: {status}"),
            }
            break;
        }
    }

    let mut held = std::collections::HashMap::new();
    for reservation in &found {
        let id = reservation.reservation_id.clone();
        let payment = payments
            .get_payment(signed(
                token,
                GetPaymentRequest {
                    reservation_id: id.clone(),
                },
            ))
            .await
            .with_context(|| format!("GetPayment {id}"))?
            .into_inner()
            .payment
            .unwrap_or_default();
        let charged = payment.amount == reservation.price;
        match reservation.status() {
            ReservationStatus::Confirmed => {
                verdict.confirmed += 1;
                if !(charged && payment.status() == PaymentStatus::Approved) {
                    verdict.money_mismatch.push(id.clone());
                }
                let pickup = chrono::NaiveDate::parse_from_str(&reservation.pickup_date, "%Y-%m-%d")?;
                let back = chrono::NaiveDate::parse_from_str(&reservation.return_date, "%Y-%m-%d")?;
                for day in pickup.iter_days().take_while(|day| *day < back) {
                    if let Some(other) = held.insert((reservation.car_number.clone(), day), id.clone()) {
                        verdict.double_booked.push(format!("{id} and {other}"));
                    }
                }
            }
            ReservationStatus::Rejected => {
                verdict.rejected += 1;
                if payment.status() != PaymentStatus::Refunded {
                    verdict.money_mismatch.push(id.clone());
                }
            }
            _ => verdict.unsettled.push(id.clone()),
        }
    }
    Ok(verdict)
}
