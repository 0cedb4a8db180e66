//! Unit tests of the held forwards' grammar: what ssh accepts, what it rejects, what is left.

use super::*;

fn os(v: &[&str]) -> Vec<OsString> {
    v.iter().map(OsString::from).collect()
}

fn no_env(_: &str) -> Option<OsString> {
    None
}

fn one(spec: &str) -> Result<HeldForward, BadForward> {
    local(&format!("-L {spec}"), spec, &no_env)
}

fn tcp(bind: Option<&str>, port: u16) -> Listen {
    Listen::Tcp {
        bind: bind.map(str::to_string),
        port,
    }
}

#[test]
fn every_form_of_dash_l() {
    let cases: &[(&str, Listen, &str)] = &[
        ("5432:db:5432", tcp(None, 5432), "db:5432"),
        (
            "127.0.0.1:5432:db:5432",
            tcp(Some("127.0.0.1"), 5432),
            "db:5432",
        ),
        ("[::1]:8080:web:80", tcp(Some("::1"), 8080), "web:80"),
        ("*:8080:[fe80::1]:80", tcp(Some("*"), 8080), "[fe80::1]:80"),
        (":8080:web:80", tcp(Some(""), 8080), "web:80"),
        (
            "localhost:8080:web:80",
            tcp(Some("localhost"), 8080),
            "web:80",
        ),
        (
            "5432:/run/postgresql/.s.PGSQL.5432",
            tcp(None, 5432),
            "/run/postgresql/.s.PGSQL.5432",
        ),
        (
            "0.0.0.0:5432:/run/db.sock",
            tcp(Some("0.0.0.0"), 5432),
            "/run/db.sock",
        ),
        (
            "/tmp/db.sock:db:5432",
            Listen::Unix("/tmp/db.sock".into()),
            "db:5432",
        ),
        (
            "/tmp/a.sock:/run/b.sock",
            Listen::Unix("/tmp/a.sock".into()),
            "/run/b.sock",
        ),
        ("ssh:db:5432", tcp(None, 22), "db:5432"),
    ];
    for (spec, listen, connect) in cases {
        let f = one(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
        assert_eq!(&f.listen, listen, "{spec}");
        assert_eq!(f.connect, *connect, "{spec}");
    }
}

#[test]
fn what_ssh_rejects_is_rejected_with_the_spec_named() {
    for spec in [
        "5432",
        "5432:db",
        "0:db:5432",
        "70000:db:5432",
        "5432:db:0",
        "5432:db:notaport",
        "a:b:c:d:e",
        "[::1:8080:web:80",
        "[::1]x:8080:web:80",
    ] {
        let e = one(spec).expect_err(spec);
        assert_eq!(e.spec, format!("-L {spec}"));
        assert!(e.to_string().starts_with(&format!("-L {spec}: ")), "{e}");
    }
}

#[test]
fn escapes_and_variables_as_ssh_reads_them() {
    let f = one(r"/tmp/odd\:name.sock:db:5432").unwrap();
    assert_eq!(f.listen, Listen::Unix("/tmp/odd:name.sock".into()));
    let env = |k: &str| (k == "PGPORT").then(|| OsString::from("6543"));
    let f = local("-L", "${PGPORT}:db:${PGPORT}", &env).unwrap();
    assert_eq!(f.listen, tcp(None, 6543));
    assert_eq!(f.connect, "db:6543");
    assert!(local("-L", "${NOPE}:db:1", &env).is_err());
}

#[test]
fn held_forwards_leave_the_rest_of_the_arguments_in_order() {
    let args = os(&[
        "-NL",
        "5432:db:5432",
        "-p",
        "2222",
        "-L6379:cache:6379",
        "-o",
        "LocalForward 7000 x:7",
        "-oLocalForward=7001 x:7",
        "-o",
        "ServerAliveInterval=5",
        "-R",
        "9000:localhost:9000",
        "-D",
        "1080",
        "host",
        "-L",
        "8080:web:80",
        "ls",
        "-L",
        "1:2:3",
    ]);
    let s = split(&args, &no_env).unwrap();
    let listens: Vec<_> = s.forwards.iter().map(|f| f.listen.clone()).collect();
    assert_eq!(
        listens,
        [
            tcp(None, 5432),
            tcp(None, 6379),
            tcp(None, 7000),
            tcp(None, 7001),
            tcp(None, 8080)
        ]
    );
    assert_eq!(s.forwards[2].spec, "-o LocalForward 7000 x:7");
    assert_eq!(s.forwards[2].connect, "x:7");
    assert_eq!(
        s.rest,
        os(&[
            "-N",
            "-p",
            "2222",
            "-o",
            "ServerAliveInterval=5",
            "-R",
            "9000:localhost:9000",
            "-D",
            "1080",
            "host",
            "ls",
            "-L",
            "1:2:3"
        ])
    );
    // `--`: everything after it is ssh's.
    let s = split(&os(&["--", "-L", "1:2:3"]), &no_env).unwrap();
    assert!(s.forwards.is_empty());
    assert_eq!(s.rest, os(&["--", "-L", "1:2:3"]));
}

#[test]
fn bind_plans_follow_ssh_for_a_client() {
    assert_eq!(plan(None, false), BindPlan::Loopback);
    assert_eq!(plan(None, true), BindPlan::Wildcard);
    assert_eq!(plan(Some("localhost"), true), BindPlan::Loopback);
    assert_eq!(plan(Some("*"), false), BindPlan::Wildcard);
    assert_eq!(plan(Some(""), false), BindPlan::Wildcard);
    // An explicit address is used whatever GatewayPorts says.
    for gw in [false, true] {
        assert_eq!(
            plan(Some("0.0.0.0"), gw),
            BindPlan::Address("0.0.0.0".into())
        );
        assert_eq!(plan(Some("::1"), gw), BindPlan::Address("::1".into()));
    }
}
