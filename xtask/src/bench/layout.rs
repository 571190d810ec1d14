//! `cargo xtask bench --layout`: the functions of the binary that run from a service's start
//! until it idles, written to [`FUNCTIONS`] for the linker to place side by side (see
//! `crates/rentacar/build.rs`).
//!
//! A process's RSS counts every page of the binary it has touched, and the kernel maps a
//! page's neighbours along with the page a process faults in. Left where the compiler puts
//! it, the code that starts a service and keeps it idle is spread over the whole binary, so
//! that an idle service maps most of the binary; placed together, it takes a few pages.
//!
//! Each service runs under valgrind's callgrind, which names every function it executes,
//! through the same starts as the bench's (a new database, then the migrated one) and a
//! few seconds of idling, on SQLite and on PostgreSQL. What they run is listed together, in the order of the names:
//! most of it is common to all four, and a list grouped by which services run each
//! function measured no better.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

use super::Backend;

/// The list the release build hands the linker, relative to the workspace root.
pub(crate) const FUNCTIONS: &str = "crates/rentacar/startup-functions.txt";

/// Where callgrind writes what each process ran.
pub(crate) fn profiles(root: &Path) -> PathBuf {
    root.join("target/layout")
}

/// `binary` run under callgrind, writing under [`profiles`].
pub(crate) fn command(
    root: &Path,
    binary: &Path,
    backend: Backend,
    service: &str,
) -> anyhow::Result<Command> {
    let dir = profiles(root);
    std::fs::create_dir_all(&dir)?;
    let mut command = Command::new("valgrind");
    command
        .args([
            "--tool=callgrind",
            // Symbol names as the linker knows them.
            "--demangle=no",
            "--compress-strings=no",
            // One name per function, however deep it recurses.
            "--separate-recs=1",
        ])
        .arg(format!(
            "--callgrind-out-file={}",
            dir.join(format!("{}-{service}.%p", backend.name())).display()
        ))
        .arg(binary);
    Ok(command)
}

/// Reads every profile under [`profiles`] and writes the functions of `binary` they ran to
/// [`FUNCTIONS`] under `root`, one symbol a line, sorted so that a new list diffs well.
/// Returns how many there are.
pub(crate) fn write(root: &Path, binary: &Path) -> anyhow::Result<usize> {
    let binary = binary.canonicalize()?;
    let mut functions = BTreeSet::new();
    for entry in std::fs::read_dir(profiles(root))? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        functions.extend(functions_of(&text, &binary).map(str::to_owned));
    }
    if functions.is_empty() {
        bail!("no profile names a function of {}", binary.display());
    }
    let list: String = functions.iter().map(|name| format!("{name}\n")).collect();
    std::fs::write(root.join(FUNCTIONS), list)?;
    Ok(functions.len())
}

/// The functions of `binary` that a callgrind profile (uncompressed names) ran.
fn functions_of<'a>(profile: &'a str, binary: &Path) -> impl Iterator<Item = &'a str> {
    let mut in_binary = false;
    profile.lines().filter_map(move |line| {
        if let Some(object) = line.strip_prefix("ob=") {
            in_binary = Path::new(object) == binary;
            return None;
        }
        let name = line.strip_prefix("fn=")?;
        // Unnamed code shows as its address, and valgrind names what runs before `main`
        // "(below main)".
        (in_binary && !name.starts_with("0x") && !name.contains(' ')).then_some(name)
    })
}

/// How many of the functions in [`FUNCTIONS`] `binary` has, and how many the list names: a
/// list made before an upgrade of Rust or of a dependency names symbols the binary no longer
/// has, and those functions are placed as the compiler left them.
pub(crate) fn found(root: &Path, binary: &Path) -> anyhow::Result<(usize, usize)> {
    let list = std::fs::read_to_string(root.join(FUNCTIONS)).unwrap_or_default();
    let listed: BTreeSet<&str> = list.lines().collect();
    let output = Command::new("nm")
        .args(["--defined-only", "--format=just-symbols"])
        .arg(binary)
        .output()
        .context("cannot run nm")?;
    if !output.status.success() {
        bail!("nm failed on {}", binary.display());
    }
    let symbols = String::from_utf8_lossy(&output.stdout);
    let found = symbols
        .lines()
        .filter(|name| listed.contains(name))
        .collect::<BTreeSet<_>>()
        .len();
    Ok((found, listed.len()))
}
