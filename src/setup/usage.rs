//! The whole usage text: every option and every `AUTOSSH_*` variable with its default, from
//! [`crate::setup::cli_doc`]. Printed on stderr with exit status 1 when autossh runs without arguments
//! (as 1.4g does), and on stdout with exit status 0 for `--help`.

use crate::setup::cli::USAGE;
use crate::setup::cli_doc;

/// Lines are wrapped to this width.
const WIDTH: usize = 80;
/// Indentation of a tag (an option, a variable) and of its text.
const TAG_INDENT: usize = 4;
const TEXT_INDENT: usize = 8;

/// The usage text, ending with a newline.
pub fn text() -> String {
    let cmd = cli_doc::command();
    let mut out = format!("{USAGE}\n\n");
    if let Some(about) = cmd.get_about() {
        out.push_str(&format!("{about}.\n\n"));
    }
    for arg in cmd.get_arguments() {
        let tag = match (arg.get_short(), arg.get_long()) {
            (Some(s), Some(l)) => format!("-{s}, --{l}"),
            (Some(s), None) => format!("-{s}"),
            (None, Some(l)) => format!("--{l}"),
            (None, None) => arg.get_id().as_str().to_uppercase(),
        };
        let tag = match arg.get_value_names() {
            Some([name]) if arg.get_short().is_some() => format!("{tag} {name}"),
            _ => tag,
        };
        let help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        entry(&mut out, &tag, &help);
    }
    out.push_str("\nEnvironment variables:\n");
    for (name, default, meaning) in cli_doc::ENVIRONMENT {
        entry(&mut out, &format!("{name} (default: {default})"), meaning);
    }
    out.push_str("\nSee `man autossh` for signals, exit statuses and how the tunnel is watched.\n");
    out
}

/// One tag, then its text wrapped and indented under it.
fn entry(out: &mut String, tag: &str, text: &str) {
    out.push_str(&" ".repeat(TAG_INDENT));
    out.push_str(tag);
    out.push('\n');
    for line in wrap(text, WIDTH - TEXT_INDENT) {
        out.push_str(&" ".repeat(TEXT_INDENT));
        out.push_str(&line);
        out.push('\n');
    }
}

/// Splits `text` into lines of at most `width` characters at spaces (a longer word stays whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_and_variable_with_its_default() {
        let t = text();
        assert!(t.starts_with(USAGE), "{t}");
        for flag in [
            "-M port[:echo_port]",
            "-f",
            "-V, --version",
            "--help",
            "SSH_OPTIONS",
        ] {
            assert!(t.contains(flag), "{flag} missing:\n{t}");
        }
        for (name, default, _) in cli_doc::ENVIRONMENT {
            assert!(
                t.contains(&format!("{name} (default: {default})")),
                "{name} missing:\n{t}"
            );
        }
        assert!(t.trim_end().ends_with("watched."), "{t}");
        assert!(t.contains("man autossh"));
    }

    #[test]
    fn lines_fit_the_width() {
        for line in text().lines() {
            assert!(line.chars().count() <= WIDTH, "too long: {line:?}");
        }
    }

    #[test]
    fn wrapping() {
        assert_eq!(wrap("a bb ccc dddd", 6), ["a bb", "ccc", "dddd"]);
        assert_eq!(wrap("  ", 6), Vec::<String>::new());
        assert_eq!(wrap("longerthanwidth x", 4), ["longerthanwidth", "x"]);
    }
}
