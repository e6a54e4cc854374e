//! `tandem check-config FILE` as a process: a valid file passes; each invalid one fails with
//! a non-zero exit (not a panic) and a message naming the file, the line of the offending
//! value, and the field, e.g. `bad.toml:5:6: subnet[0].t1: T1 2500 is greater than T2 ...`.
//! No root or network namespace needed.

mod common;

use std::process::Command;

use common::config::ServerConfig;
use common::Scratch;

/// Runs check-config on `text` written to `<name>.toml`; returns (exit code, stdout+stderr,
/// path).
fn check(scratch: &Scratch, name: &str, text: &str) -> (Option<i32>, String, String) {
    let path = scratch.join(&format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    let out = Command::new(common::tandem_bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("running tandem check-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text, path.display().to_string())
}

#[test]
fn valid_config_passes() {
    let scratch = Scratch::new("check_config_valid");
    let (code, out, _) = check(&scratch, "valid", &ServerConfig::default().toml());
    assert_eq!(
        code,
        Some(0),
        "the integration tests' own config must validate:\n{out}"
    );
}

/// Each case: a file whose line marked `# <- here` is wrong, and the field the error names.
const CASES: &[(&str, &str, &str)] = &[
    ("toml_syntax", "[server]\npreference = # <- here\n", ""),
    (
        "unknown_key",
        r#"[[subnet]]
prefix = "2001:db8:1::/64"
prefered_lifetime = 3000 # <- here
"#,
        "prefered_lifetime",
    ),
    (
        "pool_outside_subnet",
        r#"[[subnet]]
prefix = "2001:db8:1::/64"
pool = [{ start = "2001:db8:7::1000", end = "2001:db8:7::ffff" }] # <- here
"#,
        "subnet[0].pool[0]",
    ),
    (
        "overlapping_pools",
        r#"[[subnet]]
prefix = "2001:db8:1::/64"
pool = [
  { start = "2001:db8:1::1000", end = "2001:db8:1::1fff" },
  { start = "2001:db8:1::1800", end = "2001:db8:1::2fff" }, # <- here
]
"#,
        "subnet[0].pool[1]",
    ),
    (
        "t1_greater_than_t2",
        r#"[[subnet]]
prefix = "2001:db8:1::/64"
preferred_lifetime = 3000
valid_lifetime = 4000
t1 = 2500 # <- here
t2 = 2000
pool = [{ start = "2001:db8:1::1000", end = "2001:db8:1::ffff" }]
"#,
        "subnet[0].t1",
    ),
    (
        "preferred_longer_than_valid",
        r#"[[subnet]]
prefix = "2001:db8:1::/64"
preferred_lifetime = 5000 # <- here
valid_lifetime = 4000
pool = [{ start = "2001:db8:1::1000", end = "2001:db8:1::ffff" }]
"#,
        "subnet[0].preferred_lifetime",
    ),
    (
        "bad_server_duid",
        "[server]\nduid = \"00:01:zz:02\" # <- here\n",
        "server.duid",
    ),
    (
        "reservation_outside_every_pool",
        r#"[[subnet]]
prefix = "2001:db8:1::/64"
pool = [{ start = "2001:db8:1::1000", end = "2001:db8:1::ffff" }]

[[reservation]]
duid = "00:03:00:01:02:00:00:00:00:01"
addresses = ["2001:db8:99::1"] # <- here
"#,
        "reservation[0]",
    ),
];

#[test]
fn invalid_configs_name_file_line_and_field() {
    let scratch = Scratch::new("check_config_invalid");
    let mut failures = Vec::new();
    for (name, text, field) in CASES {
        let line = text
            .lines()
            .position(|l| l.contains("# <- here"))
            .expect("case marks its line")
            + 1;
        let (code, out, path) = check(&scratch, name, text);
        let location = format!("{path}:{line}:");
        let ok = code.is_some_and(|c| c != 0 && c != 101)
            && out.contains(&location)
            && out.contains(field);
        if !ok {
            failures.push(format!(
                "{name}: exit {code:?}, expected `{location}` and field `{field}` in:\n{out}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn missing_file_is_a_clear_error() {
    let scratch = Scratch::new("check_config_missing");
    let path = scratch.join("does-not-exist.toml");
    let out = Command::new(common::tandem_bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("running tandem check-config");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some_and(|c| c != 0 && c != 101),
        "exit {:?}: {text}",
        out.status
    );
    assert!(
        text.contains(&*path.to_string_lossy()),
        "names the file: {text}"
    );
}

/// The configuration example in README.md must stay valid.
#[test]
fn readme_example_validates() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```toml\n")
        .expect("README has a ```toml block")
        + "```toml\n".len();
    let len = readme[start..].find("```").expect("the block ends");
    let scratch = Scratch::new("check_config_readme");
    let (code, out, _) = check(&scratch, "readme", &readme[start..start + len]);
    assert_eq!(
        code,
        Some(0),
        "README.md's example does not validate:\n{out}"
    );
}

/// `tandem serve` refuses to start on an invalid file, with the same file:line: field error
/// (before it binds any socket, so no root or namespace is needed).
#[test]
fn serve_refuses_an_invalid_config() {
    let scratch = Scratch::new("check_config_serve_refuses");
    let (_, text, field) = CASES
        .iter()
        .find(|(name, _, _)| *name == "t1_greater_than_t2")
        .unwrap();
    let path = scratch.join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let line = text.lines().position(|l| l.contains("# <- here")).unwrap() + 1;
    let mut child = Command::new(common::tandem_bin())
        .args(["serve", "--config"])
        .arg(&path)
        .arg("--data-dir")
        .arg(scratch.join("data"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(scratch.join("serve.log")).unwrap())
        .spawn()
        .expect("spawning tandem serve");
    let status = common::proc::wait_timeout(&mut child, std::time::Duration::from_secs(20));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let log = std::fs::read_to_string(scratch.join("serve.log")).unwrap_or_default();
    let code = status.and_then(|s| s.code());
    assert!(
        code.is_some_and(|c| c != 0 && c != 101),
        "serve with an invalid config: exit {code:?} (None = still running after 20 s):\n{log}"
    );
    let location = format!("{}:{line}:", path.display());
    assert!(
        log.contains(&location) && log.contains(field),
        "expected `{location}` and `{field}`:\n{log}"
    );
}
