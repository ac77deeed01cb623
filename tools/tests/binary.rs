//! Checks of the built `weir` binary itself that need no broker: every documented command is
//! present, and bad command lines fail with clap's usage exit code.
//!
//! Besides what it asserts, this file makes `cargo test --workspace` build the `weir` binary
//! (cargo builds a package's binaries for its integration tests), so the integration tests in
//! `tests/`, which run `target/<profile>/weir`, never pick up a binary older than the sources.

use std::process::Command;

/// The `weir` binary cargo built for this test run.
fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

#[test]
fn help_lists_every_documented_command() {
    let output = weir().arg("--help").output().expect("runs weir --help");
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8_lossy(&output.stdout);
    for command in ["topic", "produce", "consume", "groups", "bench", "usl"] {
        assert!(
            help.lines()
                .any(|line| line.trim_start().starts_with(&format!("{command} "))),
            "`weir --help` does not list `{command}`:\n{help}"
        );
    }
}

#[test]
fn subcommands_have_their_documented_verbs() {
    let cases: &[(&str, &[&str])] = &[
        ("topic", &["create", "list", "describe", "delete"]),
        ("groups", &["list", "describe", "delete"]),
        ("usl", &["fit", "sweep"]),
    ];
    for (command, verbs) in cases {
        let output = weir()
            .args([command, "--help"])
            .output()
            .expect("runs weir <command> --help");
        assert!(output.status.success(), "{command}: {output:?}");
        let help = String::from_utf8_lossy(&output.stdout);
        for verb in *verbs {
            assert!(
                help.lines()
                    .any(|line| line.trim_start().starts_with(&format!("{verb} "))),
                "`weir {command} --help` does not list `{verb}`:\n{help}"
            );
        }
    }
}

#[test]
fn bad_command_lines_fail_with_the_usage_exit_code() {
    let cases: &[&[&str]] = &[
        &["no-such-command"],
        &["groups", "describe"],
        &["groups", "delete"],
        &["consume"],
        &["topic", "create"],
    ];
    for args in cases {
        let output = weir().args(*args).output().expect("runs weir");
        assert_eq!(output.status.code(), Some(2), "weir {args:?}: {output:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("Usage:"),
            "weir {args:?} printed no usage: {output:?}"
        );
    }
}
