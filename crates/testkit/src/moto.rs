//! A DynamoDB-compatible server for tests: moto's server mode, started once per test
//! binary and shared by its tests, each of which uses tables of its own.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::Context;
use tokio::sync::OnceCell;

/// A running moto server. It lives as long as the test binary: it is started under a shell
/// that kills it when the binary's end of its stdin closes, which happens however the
/// binary exits.
pub struct Moto {
    endpoint: String,
    _guard: Child,
}

static SHARED: OnceCell<Moto> = OnceCell::const_new();

impl Moto {
    /// The server shared by this test binary's tests, started on first use.
    pub async fn shared() -> anyhow::Result<&'static Moto> {
        SHARED.get_or_try_init(|| Moto::start(&[])).await
    }

    /// A server of its own with `env` set, for example one that checks credentials.
    pub async fn start(env: &[(&str, &str)]) -> anyhow::Result<Moto> {
        let binary = find_binary()
            .context("moto_server not found: run `cargo xtask test`, which installs it into .tools/")?;
        let port = rentacar_events::nats_server::free_port()?;
        let guard = Command::new("sh")
            .args([
                "-c",
                r#""$0" -H 127.0.0.1 -p "$1" >/dev/null 2>&1 & server=$!; cat >/dev/null; kill $server"#,
            ])
            .arg(&binary)
            .arg(port.to_string())
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let moto = Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            _guard: guard,
        };
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(moto);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("moto did not listen on port {port} within 30 s")
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// `$RENTACAR_MOTO_SERVER`, then the project-local `.tools/bin`, then `PATH`.
fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("RENTACAR_MOTO_SERVER") {
        return Some(PathBuf::from(path));
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin/moto_server");
    if local.is_file() {
        return Some(local);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("moto_server"))
        .find(|candidate| candidate.is_file())
}
