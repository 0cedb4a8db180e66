//! Build helpers for the autossh workspace.
//!
//! `cargo run -p xtask -- gen <outdir>` writes the man pages and shell completions of both
//! binaries, laid out as they are installed (scripts/package.sh uses `target/assets`):
//!
//! ```text
//! <outdir>/man/autossh.1                       <outdir>/man/autossh-echo.1
//! <outdir>/completions/bash/autossh            <outdir>/completions/bash/autossh-echo
//! <outdir>/completions/zsh/_autossh            <outdir>/completions/zsh/_autossh-echo
//! <outdir>/completions/fish/autossh.fish       <outdir>/completions/fish/autossh-echo.fish
//! ```

use clap_complete::Shell;
use clap_mangen::Man;
use roff::{bold, roman, Roff};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "usage: cargo run -p xtask -- gen <outdir>";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["gen", outdir] => match generate(Path::new(outdir)) {
            Ok(files) => {
                for f in files {
                    println!("{}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("xtask gen: {e}");
                ExitCode::FAILURE
            }
        },
        ["help" | "-h" | "--help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// The shells completions are generated for, and the file name each one loads.
const SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "bash"),
    (Shell::Zsh, "zsh"),
    (Shell::Fish, "fish"),
];

fn completion_file_name(shell: Shell, bin: &str) -> String {
    match shell {
        // bash-completion loads completions/<command> on first use.
        Shell::Bash => bin.to_owned(),
        Shell::Zsh => format!("_{bin}"),
        Shell::Fish => format!("{bin}.fish"),
        other => format!("{bin}.{other}"),
    }
}

/// Writes every man page and completion file under `outdir`; returns the files written.
pub fn generate(outdir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let man_dir = outdir.join("man");
    fs::create_dir_all(&man_dir)?;

    let path = man_dir.join("autossh.1");
    fs::write(&path, autossh_man()?)?;
    written.push(path);

    let path = man_dir.join("autossh-echo.1");
    fs::write(&path, echo_man()?)?;
    written.push(path);

    for (shell, dir) in SHELLS {
        let dir = outdir.join("completions").join(dir);
        fs::create_dir_all(&dir)?;
        for (bin, mut cmd) in [
            ("autossh", autossh::setup::cli_doc::command()),
            ("autossh-echo", autossh_echo::cli::command()),
        ] {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, bin, &mut buf);
            let path = dir.join(completion_file_name(shell, bin));
            fs::write(&path, buf)?;
            written.push(path);
        }
    }
    Ok(written)
}

/// A `.TP` list: a bold tag, then its text.
fn tagged_section(roff: &mut Roff, title: &str, rows: impl IntoIterator<Item = (String, String)>) {
    roff.control("SH", [title]);
    for (tag, text) in rows {
        roff.control("TP", []);
        roff.text([bold(tag)]);
        roff.text([roman(text)]);
    }
}

/// The usual sections clap_mangen renders, without its catch-all "EXTRA" section.
fn standard_sections(man: &Man, out: &mut Vec<u8>) -> io::Result<()> {
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)
}

fn see_also(roff: &mut Roff, pages: &str) {
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(pages)]);
}

/// Every piece rendered separately starts with roff's preamble (the `Aq` string
/// definition); keep only the first.
fn dedup_preamble(page: Vec<u8>) -> Vec<u8> {
    let text = String::from_utf8(page).expect("roff output is UTF-8");
    let mut seen = Vec::new();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq") {
            if seen.contains(&line) {
                continue;
            }
            seen.push(line);
        }
        out.push_str(line);
        out.push('\n');
    }
    out.into_bytes()
}

/// autossh(1): the clap description plus ENVIRONMENT, SIGNALS and EXIT STATUS.
fn autossh_man() -> io::Result<Vec<u8>> {
    use autossh::setup::cli_doc::{ENVIRONMENT, EXIT_STATUS, SIGNALS};
    let man = Man::new(autossh::setup::cli_doc::command()).title("AUTOSSH");
    let mut out = Vec::new();
    standard_sections(&man, &mut out)?;

    let mut roff = Roff::new();
    tagged_section(
        &mut roff,
        "ENVIRONMENT",
        ENVIRONMENT.iter().map(|(name, default, meaning)| {
            (name.to_string(), format!("{meaning} (default: {default})"))
        }),
    );
    tagged_section(
        &mut roff,
        "SIGNALS",
        SIGNALS
            .iter()
            .map(|(s, what)| (s.to_string(), what.to_string())),
    );
    tagged_section(
        &mut roff,
        "EXIT STATUS",
        EXIT_STATUS
            .iter()
            .map(|(c, what)| (c.to_string(), what.to_string())),
    );
    see_also(
        &mut roff,
        "ssh(1), ssh_config(5), autossh-echo(1), systemd.service(5)",
    );
    roff.to_writer(&mut out)?;
    man.render_version_section(&mut out)?;
    Ok(dedup_preamble(out))
}

/// autossh-echo(1): the clap description, its exit statuses (from its after_help).
fn echo_man() -> io::Result<Vec<u8>> {
    let cmd = autossh_echo::cli::command();
    let exit = cmd
        .get_after_long_help()
        .or_else(|| cmd.get_after_help())
        .map(|s| s.to_string());
    let man = Man::new(cmd).title("AUTOSSH-ECHO");
    let mut out = Vec::new();
    standard_sections(&man, &mut out)?;
    let mut roff = Roff::new();
    if let Some(text) = exit {
        roff.control("SH", ["EXIT STATUS"]);
        let text = text.strip_prefix("Exit status:").unwrap_or(&text).trim();
        roff.text([roman(text)]);
    }
    see_also(&mut roff, "autossh(1)");
    roff.to_writer(&mut out)?;
    man.render_version_section(&mut out)?;
    Ok(dedup_preamble(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Command;

    /// Every long flag (`--name`) and short flag (`-x`) the command defines.
    fn flags(cmd: &Command) -> Vec<String> {
        let mut v = Vec::new();
        for a in cmd.get_arguments() {
            if let Some(l) = a.get_long() {
                v.push(format!("--{l}"));
            }
            if let Some(s) = a.get_short() {
                v.push(format!("-{s}"));
            }
        }
        v
    }

    /// roff escapes `-` as `\-`; undo it to search the text.
    fn man_text(path: &Path) -> String {
        fs::read_to_string(path).unwrap().replace("\\-", "-")
    }

    #[test]
    fn generates_man_pages_and_completions() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate(dir.path()).unwrap();
        assert_eq!(files.len(), 2 + 3 * 2);

        let autossh = man_text(&dir.path().join("man/autossh.1"));
        assert!(autossh.contains("\n.TH AUTOSSH 1 "), "{autossh}");
        assert_eq!(autossh.matches(".ds Aq").count(), 2, "{autossh}");
        for f in ["-M", "-f", "-V"] {
            assert!(autossh.contains(f), "autossh.1 lacks {f}");
        }
        assert_eq!(
            flags(&autossh::setup::cli_doc::command())
                .iter()
                .filter(|f| !autossh.contains(f.as_str()))
                .count(),
            0
        );
        for (name, _, _) in autossh::setup::cli_doc::ENVIRONMENT {
            assert!(autossh.contains(name), "autossh.1 lacks {name}");
        }
        for s in [
            "ENVIRONMENT",
            "SIGNALS",
            "EXIT STATUS",
            "SSH_OPTIONS",
            "SIGUSR1",
        ] {
            assert!(autossh.contains(s), "autossh.1 lacks {s}");
        }
        // Independent of cli_doc's table: every AUTOSSH_ name in the README is in the man page.
        let readme = include_str!("../../README.md");
        for word in readme.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("AUTOSSH_") && word.len() > "AUTOSSH_".len() {
                assert!(autossh.contains(word), "autossh.1 lacks {word} (README.md)");
            }
        }

        let echo = man_text(&dir.path().join("man/autossh-echo.1"));
        assert!(echo.contains("\n.TH AUTOSSH-ECHO 1 "), "{echo}");
        let echo_flags = flags(&autossh_echo::cli::command());
        assert!(echo_flags.contains(&"--listen".to_owned()));
        for f in &echo_flags {
            assert!(echo.contains(f.as_str()), "autossh-echo.1 lacks {f}");
        }
        assert!(echo.contains("EXIT STATUS"));

        for (shell, dir_name) in SHELLS {
            for bin in ["autossh", "autossh-echo"] {
                let p = dir
                    .path()
                    .join("completions")
                    .join(dir_name)
                    .join(completion_file_name(shell, bin));
                let text = fs::read_to_string(&p).unwrap();
                assert!(!text.trim().is_empty(), "{} is empty", p.display());
                assert!(text.contains(bin), "{} does not mention {bin}", p.display());
            }
        }
        let bash = fs::read_to_string(dir.path().join("completions/bash/autossh-echo")).unwrap();
        assert!(bash.contains("--status-file"));
    }

    #[test]
    fn generate_is_repeatable() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let fa = generate(a.path()).unwrap();
        let fb = generate(b.path()).unwrap();
        for (x, y) in fa.iter().zip(&fb) {
            assert_eq!(
                fs::read(x).unwrap(),
                fs::read(y).unwrap(),
                "{}",
                x.display()
            );
        }
    }
}
