//! Finding the workspace binaries the tests run: `weir-broker` and `weir`.
//!
//! Cargo's `CARGO_BIN_EXE_<name>` only names binaries of the package under test, and a
//! dev-dependency cannot provide another package's binary, so the tests look for them where
//! cargo puts them:
//!
//! 1. an explicit path in `WEIR_BROKER_BIN` / `WEIR_BIN`, if set;
//! 2. the profile directory the test executable runs from (`target/<profile>/deps/<test>` →
//!    `target/<profile>/<binary>`), which honours `CARGO_TARGET_DIR` and `--release`;
//! 3. `<workspace>/target/{debug,release}/<binary>`, found from `CARGO_MANIFEST_DIR`.
//!
//! If none exists, `cargo build -p <package>` (same profile) runs once per test process, guarded
//! by a `OnceLock` per binary, and the binary is looked up again. An existing binary is used as
//! it is: build the broker and the CLI first (`cargo build -p weir-broker -p weir-tools`, or
//! `cargo test --workspace`, which builds every binary) so the tests run the current sources.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A binary of the workspace: its file name, the package that builds it, and the environment
/// variable that may point at it explicitly.
#[derive(Debug, Clone, Copy)]
pub struct WorkspaceBinary {
    /// The executable's file name.
    pub file_name: &'static str,
    /// The cargo package that builds it.
    pub package: &'static str,
    /// An environment variable that, when set, is the executable's path.
    pub override_variable: &'static str,
}

/// The broker binary.
pub const BROKER: WorkspaceBinary = WorkspaceBinary {
    file_name: "weir-broker",
    package: "weir-broker",
    override_variable: "WEIR_BROKER_BIN",
};

/// The `weir` command line.
pub const CLI: WorkspaceBinary = WorkspaceBinary {
    file_name: "weir",
    package: "weir-tools",
    override_variable: "WEIR_BIN",
};

/// The path of the `weir-broker` executable (built once if missing).
pub fn broker_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| locate_or_build(BROKER)).clone()
}

/// The path of the `weir` executable (built once if missing).
pub fn cli_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| locate_or_build(CLI)).clone()
}

fn locate_or_build(binary: WorkspaceBinary) -> PathBuf {
    if let Some(path) = std::env::var_os(binary.override_variable) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{} = {} is not a file",
            binary.override_variable,
            path.display()
        );
        return path;
    }
    if let Some(path) = locate(binary) {
        return path;
    }
    build(binary);
    locate(binary).unwrap_or_else(|| {
        panic!(
            "`cargo build -p {}` succeeded but no {} was found in {:?}",
            binary.package,
            binary.file_name,
            candidate_dirs()
        )
    })
}

fn locate(binary: WorkspaceBinary) -> Option<PathBuf> {
    candidate_dirs()
        .into_iter()
        .map(|dir| dir.join(binary.file_name))
        .find(|path| path.is_file())
}

/// The profile directory of the running test executable, if it sits in `<profile>/deps/`.
fn own_profile_dir() -> Option<PathBuf> {
    let executable = std::env::current_exe().ok()?;
    let deps = executable.parent()?;
    if deps.file_name()? != "deps" {
        return None;
    }
    deps.parent().map(Path::to_path_buf)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory: the workspace root")
        .to_path_buf()
}

fn candidate_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = own_profile_dir() {
        dirs.push(dir);
    }
    let target = workspace_root().join("target");
    for profile in ["debug", "release"] {
        let dir = target.join(profile);
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs
}

fn build(binary: WorkspaceBinary) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_root())
        .args(["build", "-p", binary.package]);
    match own_profile_dir()
        .as_deref()
        .and_then(Path::file_name)
        .and_then(|name| name.to_str())
    {
        Some("debug") | None => {}
        Some("release") => {
            command.arg("--release");
        }
        Some(profile) => {
            command.args(["--profile", profile]);
        }
    }
    let status = command
        .status()
        .unwrap_or_else(|error| panic!("cannot run cargo to build {}: {error}", binary.package));
    assert!(
        status.success(),
        "`cargo build -p {}` failed ({status}); the tests need its binary {}",
        binary.package,
        binary.file_name
    );
}

/// Runs `weir <args>` with `stdin` as its standard input (closed once written) and returns its
/// output; kills it and fails the test if it does not finish within `timeout`. `WEIR_BROKER` is
/// removed from its environment so only the arguments choose the broker.
pub fn run_cli(args: &[&str], stdin: &[u8], timeout: std::time::Duration) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;

    let mut child = Command::new(cli_path())
        .args(args)
        .env_remove("WEIR_BROKER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {:?}: {error}", cli_path()));
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // The command may exit without reading everything (e.g. on an error).
        let _ = input.write_all(&stdin);
    });
    let mut status = None;
    let finished = crate::wait::poll_until(timeout, || {
        status = child.try_wait().expect("waitpid on weir");
        status.is_some()
    });
    if !finished {
        let _ = child.kill();
    }
    let output = child.wait_with_output().expect("collect weir's output");
    writer.join().expect("stdin writer");
    assert!(
        finished,
        "did not finish within {timeout:?}: {}",
        describe_cli_run(args, &output)
    );
    output
}

/// Describes a finished `weir` run (arguments, exit status, stdout, stderr) for a failure
/// message.
pub fn describe_cli_run(args: &[&str], output: &std::process::Output) -> String {
    format!(
        "`weir {}` exited with {}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
