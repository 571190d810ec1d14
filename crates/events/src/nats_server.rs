//! A local `nats-server -js` child process, for `rentacar up` and integration tests.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::process::{Child, Command};

/// A running nats-server with JetStream; killed when dropped.
pub struct NatsServer {
    child: Child,
    port: u16,
}

impl NatsServer {
    /// Finds the binary: `$RENTACAR_NATS_SERVER`, then the project-local `.tools/bin`, then
    /// `PATH`, then Debian's `/usr/sbin`.
    pub fn find_binary() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("RENTACAR_NATS_SERVER") {
            return Some(PathBuf::from(path));
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let local = workspace.join(".tools/bin/nats-server");
        if local.is_file() {
            return Some(local);
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
            .map(|dir| dir.join("nats-server"))
            .find(|candidate| candidate.is_file())
    }

    /// Starts a server on `port` (0 picks a free one) storing JetStream data under
    /// `store_dir`, and waits until it accepts connections.
    pub async fn start(binary: &Path, port: u16, store_dir: &Path) -> std::io::Result<Self> {
        let port = if port == 0 { free_port()? } else { port };
        let child = Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let server = Self { child, port };
        server.wait_until_listening().await?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server abruptly, as a crash would.
    pub async fn kill(&mut self) -> std::io::Result<()> {
        self.child.kill().await
    }

    async fn wait_until_listening(&self) -> std::io::Result<()> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(std::io::Error::other(format!(
            "nats-server did not listen on {addr} within 10 s"
        )))
    }
}

/// Asks the OS for a port nobody is using right now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}
