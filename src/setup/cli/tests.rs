//! Unit tests of the command line splitter and the monitor port values.

use super::*;

fn ssh(args: &[&str]) -> Vec<String> {
    parse(args.iter().copied())
        .unwrap()
        .ssh_args
        .into_iter()
        .map(|a| a.into_string().unwrap())
        .collect()
}

#[test]
fn plain_arguments_pass_through_in_order() {
    assert_eq!(
        ssh(&["-M", "20000", "-N", "-L", "5432:db:5432", "host"]),
        ["-N", "-L", "5432:db:5432", "host"]
    );
}

#[test]
fn jump_host_keeps_its_value() {
    assert_eq!(
        ssh(&["-M", "0", "-J", "jump", "-N", "host"]),
        ["-J", "jump", "-N", "host"]
    );
}

#[test]
fn bind_interface_and_stdio_forward() {
    assert_eq!(
        ssh(&["-B", "eth0", "-W", "db:5432", "h"]),
        ["-B", "eth0", "-W", "db:5432", "h"]
    );
}

#[test]
fn f_is_stripped_from_clusters() {
    let cli = parse(["-fN", "host"]).unwrap();
    assert!(cli.daemon);
    assert_eq!(cli.ssh_args, [OsString::from("-N"), OsString::from("host")]);
    let cli = parse(["-f", "host"]).unwrap();
    assert_eq!(cli.ssh_args, [OsString::from("host")]);
}

#[test]
fn f_inside_a_value_is_not_stripped() {
    assert_eq!(
        ssh(&["-ofoo=bar", "-Lf:1:f:2", "h"]),
        ["-ofoo=bar", "-Lf:1:f:2", "h"]
    );
}

#[test]
fn attached_and_clustered_m() {
    let cli = parse(["-M20000", "h"]).unwrap();
    assert_eq!(cli.monitor, Some(MonitorSpec::Loop(20000)));
    let cli = parse(["-fM", "20000", "h"]).unwrap();
    assert_eq!(cli.monitor, Some(MonitorSpec::Loop(20000)));
    assert!(cli.daemon);
    assert_eq!(cli.ssh_args, [OsString::from("h")]);
    let cli = parse(["-NfM20000:7", "h"]).unwrap();
    assert_eq!(
        cli.monitor,
        Some(MonitorSpec::Echo {
            port: 20000,
            echo: 7
        })
    );
    assert_eq!(cli.ssh_args, [OsString::from("-N"), OsString::from("h")]);
}

#[test]
fn remote_command_keeps_its_options() {
    assert_eq!(ssh(&["-M", "0", "host", "ls", "-l"]), ["host", "ls", "-l"]);
    // -M after the command belongs to the command.
    assert_eq!(
        ssh(&["h", "cmd", "-M", "5", "-f"]),
        ["h", "cmd", "-M", "5", "-f"]
    );
}

#[test]
fn options_after_destination_are_parsed_like_ssh() {
    let cli = parse(["host", "-N", "-M", "20000", "-f"]).unwrap();
    assert_eq!(cli.monitor, Some(MonitorSpec::Loop(20000)));
    assert!(cli.daemon);
    assert_eq!(cli.ssh_args, [OsString::from("host"), OsString::from("-N")]);
}

#[test]
fn double_dash_reaches_ssh_and_ends_options() {
    assert_eq!(ssh(&["-M", "0", "--", "host", "-f"]), ["--", "host", "-f"]);
}

#[test]
fn o_values_are_collected() {
    let cli = parse([
        "-o",
        "ServerAliveInterval=5",
        "-NoExitOnForwardFailure no",
        "h",
    ])
    .unwrap();
    assert_eq!(
        cli.ssh_o_values,
        ["ServerAliveInterval=5", "ExitOnForwardFailure no"]
    );
}

#[test]
fn version_needs_no_destination() {
    assert!(parse(["-V"]).unwrap().version);
    assert!(parse(["--version"]).unwrap().version);
}

#[test]
fn help_is_ours_among_options_and_the_commands_after() {
    assert!(parse(["--help"]).unwrap().help);
    assert!(parse(["-M", "0", "host", "--help"]).unwrap().help);
    let cli = parse(["host", "ls", "--help", "--version"]).unwrap();
    assert!(!cli.help && !cli.version);
    assert_eq!(ssh(&["host", "ls", "--help"]), ["host", "ls", "--help"]);
    assert_eq!(ssh(&["-L", "--help", "h"]), ["-L", "--help", "h"]);
}

#[test]
fn missing_destination_is_an_error() {
    assert!(parse(["-M", "0", "-N"]).is_err());
    assert!(parse(["-M"]).is_err());
    assert!(parse(["-L"]).is_err());
}

#[test]
fn monitor_values() {
    let m = |s: &str| parse_monitor(OsStr::new(s));
    assert_eq!(m("0").unwrap(), MonitorSpec::Off);
    assert_eq!(m("0x4e20").unwrap(), MonitorSpec::Loop(20000));
    assert_eq!(m("65534").unwrap(), MonitorSpec::Loop(65534));
    assert!(m("65535").is_err());
    assert!(m("abc").is_err());
    assert!(m("").is_err());
    assert!(m("20000:0").is_err());
    assert!(m("20000:").is_err());
    assert!(m("20000:70000").is_err());
    assert!(m("-5").is_err());
    assert_eq!(
        m("20000:7").unwrap(),
        MonitorSpec::Echo {
            port: 20000,
            echo: 7
        }
    );
}

#[test]
fn c_numbers() {
    assert_eq!(parse_c_number("10"), Some(10));
    assert_eq!(parse_c_number("0x10"), Some(16));
    assert_eq!(parse_c_number("010"), Some(8));
    assert_eq!(parse_c_number("0"), Some(0));
    assert_eq!(parse_c_number("1e3"), None);
    assert_eq!(parse_c_number("+1"), None);
}

#[test]
fn errors_say_what_is_wrong() {
    let err = |args: &[&str]| parse(args.iter().copied()).unwrap_err();
    assert_eq!(err(&["-M", "0", "-N"]), CliError::NoDestination);
    assert_eq!(err(&["--"]), CliError::NoDestination);
    assert_eq!(err(&["-M"]), CliError::MonitorWithoutPort);
    assert_eq!(err(&["h", "-L"]), CliError::NoValue('L'));
    assert_eq!(err(&["--tunnels"]), CliError::NoLongValue("tunnels"));
    assert_eq!(
        err(&["-M", "abc", "h"]),
        CliError::Monitor(MonitorError::Port("abc".into()))
    );
    assert_eq!(
        err(&["-M", "70000", "h"]).to_string(),
        "-M: monitor port 70000 out of range (1-65534; port+1 is used too)"
    );
    assert_eq!(err(&["-L"]).to_string(), "option -L needs a value");
    assert!(parse(["-N", "--", "h"]).is_ok());
}

#[test]
fn tunnels_and_its_control_socket_go_together() {
    let check = |args: &[&str]| parse(args.iter().copied()).unwrap().check_mode();
    assert_eq!(check(&["h"]), Ok(()));
    assert_eq!(check(&["--tunnels", "f"]), Ok(()));
    assert_eq!(check(&["--tunnels", "f", "--control-socket", "s"]), Ok(()));
    assert_eq!(
        check(&["--tunnels", "f", "-N", "h"]),
        Err(CliError::TunnelsWithSsh)
    );
    assert_eq!(
        check(&["--tunnels=f", "-M", "0"]),
        Err(CliError::TunnelsWithSsh)
    );
    assert_eq!(
        check(&["--control-socket", "s", "h"]),
        Err(CliError::ControlWithoutTunnels)
    );
}
