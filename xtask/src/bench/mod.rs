//! `cargo xtask bench [--backend sqlite|postgres] [--rate N] [--seconds N] [--saturation N]`:
//! the platform measured the way its users load it, on the machine at hand. With
//! `--kill <service>` it measures nothing but runs the saga with that service SIGKILLed and
//! restarted halfway, then checks every reservation the platform acknowledged. With
//! `--layout` it measures nothing but lists the functions that run from start to idle, for
//! the linker to place together (see [`layout`]).
//!
//! It builds the release binary, starts a private nats-server and each service as its own
//! process (authentication on, as deployed), and drives them with the k6 scenarios of
//! `loadtest/k6`. CPU time comes from the kernel's per-thread scheduler statistics of every
//! platform process, memory from `/proc/<pid>/status`. The figures replace this backend's
//! section of `loadtest/REPORT.md`; everything else in the report is left as written.

use std::{
    collections::BTreeMap,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use rentacar_auth::{DEV_ISSUER, Issuer, issuer::JWKS_FILE};

mod k6;
mod kept;
mod layout;
mod platform;
mod report;

use k6::K6;
use platform::{Databases, Memory, Process, free_port, serving, wait_for_port};
use report::{machine, replace_section, report_section};

/// The services in the order they start: reservation calls payment, so payment comes first.
pub(crate) const SERVICES: [&str; 4] = ["payment", "fleet", "mypage", "reservation"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        }
    }
}

/// What to run, from the command line.
#[derive(Debug)]
pub(crate) struct Options {
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
    /// Instead of the measurements: the services started under callgrind and left idle, and
    /// the functions they ran written to [`layout::FUNCTIONS`].
    layout: bool,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut options = Self {
            backend: Backend::Sqlite,
            rate: 200,
            seconds: 20,
            saturation: 3000,
            kill: None,
            layout: false,
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            if flag == "--layout" {
                options.layout = true;
                continue;
            }
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
                    "unknown option {flag}; usage: cargo xtask bench [--backend sqlite|postgres] [--rate N] [--seconds N] [--saturation N] [--kill SERVICE | --layout]"
                ),
            }
        }
        Ok(options)
    }
}

pub fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let mut options = Options::parse(args)?;
    if !options.layout {
        return run_on(root, &options);
    }
    // Both backends: each runs its own driver's code.
    let profiles = layout::profiles(root);
    let _ = std::fs::remove_dir_all(&profiles);
    for backend in [Backend::Sqlite, Backend::Postgres] {
        options.backend = backend;
        run_on(root, &options)?;
    }
    let functions = layout::write(root, &root.join("target/release/rentacar"))?;
    println!("{functions} functions written to {}", layout::FUNCTIONS);
    Ok(())
}

/// The bench, or the profiles of `--layout`, on `options.backend`.
fn run_on(root: &Path, options: &Options) -> anyhow::Result<()> {
    // Built as the image builds it, but not stripped, so that a profiler can name functions.
    crate::run(crate::cargo(root).args(crate::RELEASE_BUILD))?;
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

    let service_command = |service: &str, port: u16, payment: Option<u16>| -> anyhow::Result<Command> {
        let mut command = if options.layout {
            layout::command(root, &binary, options.backend, service)?
        } else {
            Command::new(&binary)
        };
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
        Ok(command)
    };
    // Starts a service and waits until it is SERVING; returns how long that took.
    let start = |service: &str, port: u16, payment: Option<u16>| -> anyhow::Result<(Process, Duration)> {
        let mut command = service_command(service, port, payment)?;
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
        Ok((process, started.elapsed()))
    };
    let mut services = Vec::new();
    let mut ports = BTreeMap::new();
    for service in SERVICES {
        let port = free_port()?;
        let (process, first_start) = start(service, port, ports.get("payment").copied())?;
        ports.insert(service, port);
        services.push((process, first_start));
    }
    // Each again, on the database its first start migrated: what a rolling update or a
    // rescheduled pod waits for.
    let mut restarts = Vec::new();
    for (index, service) in SERVICES.iter().enumerate() {
        services[index].0.stop();
        let (process, restart) = start(service, ports[service], ports.get("payment").copied())?;
        services[index].0 = process;
        restarts.push(restart);
    }
    // Idle: after start-up work (stream and consumer creation) has settled.
    std::thread::sleep(Duration::from_secs(3));
    let idle_memory: Vec<Memory> = services.iter().map(|(p, _)| p.memory()).collect();

    if options.layout {
        for (process, _) in &services {
            process.stop();
        }
        nats.stop();
        databases.drop_all();
        return Ok(());
    }

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
            let (restarted, _) = start(victim, port, payment)?;
            println!("{victim} restarted");
            services[index].0 = restarted;
            Ok(())
        };
        let cars = options.rate * options.seconds / 300 + 10;
        let ran = k6.run_with(
            "saga",
            options.rate,
            options.seconds,
            cars,
            &[],
            &[("PRINT_RESERVED", "1")],
            Some(&mut kill_and_restart),
        )?;
        let acknowledged = kept::acknowledged_ids(&ran.log)?;
        let verdict = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(kept::check_kept(&ports, &k6.token, &acknowledged))?;
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

    let mut section = report_section(
        options,
        &services,
        &restarts,
        &idle_memory,
        &health,
        &saga,
        &saturated,
    );
    let (found, listed) = layout::found(root, &binary)?;
    section.push_str(&format!(
        "\nFunctions of the start-up list (`cargo xtask bench --layout`) the binary has: {found} of {listed}.\n"
    ));
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
