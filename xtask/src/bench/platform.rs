//! The platform's processes and databases, and what the kernel says of them.

use std::{
    cell::RefCell,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use super::{Backend, SERVICES};

/// A process's resident memory.
#[derive(Clone, Copy)]
pub(crate) struct Memory {
    /// Everything resident: its own memory and the pages of the files it maps.
    pub(crate) rss_kib: u64,
    /// Its own memory alone (heap, stacks, anonymous mappings): what the service allocated,
    /// as opposed to the pages of the binary and libraries, which every process running
    /// them shares and the kernel can drop at any time.
    pub(crate) anon_kib: u64,
}

/// A child process of the platform, killed when dropped.
pub(crate) struct Process {
    pub(crate) name: String,
    pub(crate) child: RefCell<Child>,
}

impl Process {
    pub(crate) fn spawn(name: &str, command: &mut Command, work: &Path) -> anyhow::Result<Self> {
        // Appended to: a service started again goes on in the same log.
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(work.join(format!("{name}.log")))?;
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

    pub(crate) fn pid(&self) -> u32 {
        self.child.borrow().id()
    }

    /// CPU time used so far by all of the process's threads.
    pub(crate) fn cpu(&self) -> Duration {
        cpu_of(self.pid())
    }

    /// Resident memory now, as the kernel counts it in `/proc/<pid>/status`.
    pub(crate) fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let kib = |field: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        Memory {
            rss_kib: kib("VmRSS:"),
            anon_kib: kib("RssAnon:"),
        }
    }

    /// SIGKILL, then a wait for the exit.
    pub(crate) fn kill(&self) {
        let mut child = self.child.borrow_mut();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGTERM, then a wait for the exit.
    pub(crate) fn stop(&self) {
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
/// (at `RENTACAR_BENCH_POSTGRES_URL`, default the local server) dropped afterwards. The local
/// server is reached without TLS: over loopback it would add nothing but the server's
/// handshake to each new connection (tens of milliseconds each).
pub(crate) struct Databases {
    pub(crate) backend: Backend,
    pub(crate) work: PathBuf,
    pub(crate) admin_url: String,
    pub(crate) prefix: String,
}

impl Databases {
    pub(crate) fn create(backend: Backend, work: &Path) -> anyhow::Result<Self> {
        let admin_url = std::env::var("RENTACAR_BENCH_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable".to_owned());
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

    pub(crate) fn url(&self, service: &str) -> String {
        match self.backend {
            Backend::Sqlite => format!("sqlite://{}/{service}.db?mode=rwc", self.work.display()),
            Backend::Postgres => {
                // The admin URL with the database swapped, its parameters kept.
                let (base, database) = self.admin_url.rsplit_once('/').unwrap_or((&self.admin_url, ""));
                let parameters = database.find('?').map_or("", |at| &database[at..]);
                format!("{base}/{}_{service}{parameters}", self.prefix)
            }
        }
    }

    pub(crate) fn psql(&self, sql: &str) -> anyhow::Result<()> {
        let output = Command::new("psql")
            .args([&self.admin_url, "-v", "ON_ERROR_STOP=1", "-qc", sql])
            .output()
            .context("psql is needed for --backend postgres")?;
        if !output.status.success() {
            bail!("{sql}: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(())
    }

    pub(crate) fn drop_all(&self) {
        if self.backend == Backend::Postgres {
            for service in SERVICES {
                if let Err(err) = self.psql(&format!("DROP DATABASE IF EXISTS {}_{service}", self.prefix)) {
                    eprintln!("{err}");
                }
            }
        }
    }
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(crate) fn wait_for_port(port: u16) -> anyhow::Result<()> {
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
pub(crate) async fn serving(port: u16) -> anyhow::Result<()> {
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
