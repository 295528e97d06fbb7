//! `tango-gateway check` as a user runs it: exit 0 and a summary for a good file; exit 2 and
//! every problem on stderr with its key path for a bad one; the API key never printed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

use secrecy::ExposeSecret;
use tango_sandbox::pki::{write_new_file, Ca, ClientSpec, DevPki, DEV_CLIENT_CN, KEY_FILE_MODE};
use tempfile::TempDir;

const API_KEY: &str = "sk-check-do-not-print-7f3a9c";
const PLATFORM: &str = "check-platform";

/// A directory with the dev PKI, odd client certificates and the API key file.
fn material() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate().unwrap();
    pki.write_to(dir.path(), false).unwrap();
    let write = |name: &str, text: &str, mode: u32| {
        write_new_file(&dir.path().join(name), text.as_bytes(), mode, false).unwrap();
    };
    let other = Ca::new("another CA").unwrap();
    let foreign = other.issue_client(&ClientSpec::new("foreign")).unwrap();
    write(
        "foreign.key",
        foreign.key_pem.expose_secret(),
        KEY_FILE_MODE,
    );
    for (name, spec) in [
        ("expired", ClientSpec::new("expired-client").expired()),
        ("long", ClientSpec::new("long-client").valid_for_days(730)),
    ] {
        let cert = pki.ca.issue_client(&spec).unwrap();
        write(&format!("{name}.pem"), &cert.cert_pem, 0o644);
        write(
            &format!("{name}.key"),
            cert.key_pem.expose_secret(),
            KEY_FILE_MODE,
        );
    }
    write("api-key", &format!("{API_KEY}\n"), KEY_FILE_MODE);
    dir
}

/// The example's shape, with local files; `${TANGO_PLATFORM_NAME}` comes from the environment.
fn good_yaml(dir: &Path) -> String {
    let f = |name: &str| dir.join(name).display().to_string();
    format!(
        r#"listen: "127.0.0.1:0"
admin:
  listen: "127.0.0.1:0"
inbound:
  allow: ["10.0.0.0/8", "127.0.0.0/8", "::1/128"]
forwarded_for:
  mode: append
routes:
  - name: raas
    match:
      path_prefix: /raas/v2/
    upstream:
      url: "https://localhost:8443"
      timeout: 15s
      tls:
        ca_file: "{ca}"
        client_cert_file: "{cert}"
        client_key_file: "{key}"
    auth:
      basic:
        username: "${{TANGO_PLATFORM_NAME}}"
        password_file: "{api_key}"
"#,
        ca = f("ca.pem"),
        cert = f("client.pem"),
        key = f("client.key"),
        api_key = f("api-key"),
    )
}

/// A second route, appended to the `routes` list.
fn second_route(name: &str, prefix: &str) -> String {
    format!(
        "  - name: {name}\n    match:\n      path_prefix: {prefix}\n    upstream:\n      url: \"https://localhost:8443\"\n    auth: none\n"
    )
}

fn check(dir: &Path, yaml: &str, platform: Option<&str>) -> Output {
    let file = dir.join("gateway.yaml");
    std::fs::write(&file, yaml).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_tango-gateway"));
    command.arg("check").arg("--config").arg(&file).env_clear();
    if let Some(platform) = platform {
        command.env("TANGO_PLATFORM_NAME", platform);
    }
    let output = command.output().unwrap();
    for stream in [&output.stdout, &output.stderr] {
        let text = String::from_utf8_lossy(stream);
        assert!(!text.contains(API_KEY), "the API key was printed:\n{text}");
    }
    output
}

/// Runs `check` on `yaml`, expects exit 2 with `key` named on stderr.
fn assert_refused(dir: &Path, yaml: &str, key: &str) {
    let output = check(dir, yaml, Some(PLATFORM));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(
        stderr.contains(key),
        "stderr does not name {key}:\n{stderr}"
    );
}

#[test]
fn a_good_config_passes_with_a_summary_and_no_secret() {
    let dir = material();
    let output = check(dir.path(), &good_yaml(dir.path()), Some(PLATFORM));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr:\n{stderr}");
    for expected in [
        "route raas",
        "https://localhost:8443",
        PLATFORM,
        "subject:",
        DEV_CLIENT_CN,
        "not after:",
        "days left",
    ] {
        assert!(
            stdout.contains(expected),
            "summary lacks {expected:?}:\n{stdout}"
        );
    }
}

#[test]
fn an_unparseable_cidr_is_refused() {
    let dir = material();
    let yaml = good_yaml(dir.path()).replace("\"10.0.0.0/8\", \"127", "\"10.0.0.0/33\", \"127");
    assert_refused(dir.path(), &yaml, "inbound.allow[0]");
}

#[test]
fn a_plain_http_upstream_needs_allow_insecure_upstream() {
    let dir = material();
    let yaml = good_yaml(dir.path()).replace("https://localhost:8443", "http://localhost:8080");
    assert_refused(dir.path(), &yaml, "routes[0].upstream.url");
}

#[test]
fn a_client_certificate_without_its_key_is_refused() {
    let dir = material();
    let key_line = format!(
        "        client_key_file: \"{}\"\n",
        dir.path().join("client.key").display()
    );
    let yaml = good_yaml(dir.path()).replace(&key_line, "");
    assert_refused(dir.path(), &yaml, "routes[0].upstream.tls.client_key_file");
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused() {
    let dir = material();
    let yaml = good_yaml(dir.path()).replace("client.key", "foreign.key");
    assert_refused(dir.path(), &yaml, "routes[0].upstream.tls.client_key_file");
}

#[test]
fn an_expired_client_certificate_is_refused() {
    let dir = material();
    let yaml = good_yaml(dir.path())
        .replace("client.pem", "expired.pem")
        .replace("client.key", "expired.key");
    assert_refused(dir.path(), &yaml, "routes[0].upstream.tls.client_cert_file");
}

#[test]
fn a_certificate_valid_two_years_is_refused_unless_allowed() {
    let dir = material();
    let yaml = good_yaml(dir.path())
        .replace("client.pem", "long.pem")
        .replace("client.key", "long.key");
    assert_refused(dir.path(), &yaml, "routes[0].upstream.tls.client_cert_file");
    let allowed = yaml.replace(
        "      tls:\n",
        "      tls:\n        allow_long_validity: true\n",
    );
    let output = check(dir.path(), &allowed, Some(PLATFORM));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr:\n{stderr}");
}

#[test]
fn duplicate_route_names_are_refused() {
    let dir = material();
    let yaml = good_yaml(dir.path()) + &second_route("raas", "/raas/v1/");
    assert_refused(dir.path(), &yaml, "routes[1].name");
}

#[test]
fn two_routes_with_the_same_prefix_and_sources_are_refused() {
    let dir = material();
    let yaml = good_yaml(dir.path()) + &second_route("raas-again", "/raas/v2");
    assert_refused(dir.path(), &yaml, "routes[1].match.path_prefix");
}

#[test]
fn a_password_given_twice_is_refused() {
    let dir = material();
    let yaml = good_yaml(dir.path()).replace(
        "        password_file:",
        "        password: \"inline-secret\"\n        password_file:",
    );
    assert_refused(dir.path(), &yaml, "routes[0].auth.basic.password");
}

#[test]
fn an_unknown_key_is_refused() {
    let dir = material();
    let yaml = good_yaml(dir.path()).replace("      timeout: 15s", "      timout: 15s");
    assert_refused(dir.path(), &yaml, "routes[0].upstream.timout");
}

#[test]
fn an_unset_variable_is_refused() {
    let dir = material();
    let output = check(dir.path(), &good_yaml(dir.path()), None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(stderr.contains("TANGO_PLATFORM_NAME"), "{stderr}");
    assert!(stderr.contains("routes[0].auth.basic.username"), "{stderr}");
}

#[test]
fn every_problem_is_listed_not_only_the_first() {
    let dir = material();
    let yaml = good_yaml(dir.path())
        .replace("\"10.0.0.0/8\", \"127", "\"10.0.0.0/33\", \"127")
        .replace("https://localhost:8443", "http://localhost:8080");
    let output = check(dir.path(), &yaml, Some(PLATFORM));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("inbound.allow[0]"), "{stderr}");
    assert!(stderr.contains("routes[0].upstream.url"), "{stderr}");
}

#[test]
fn version_names_the_package_version_and_the_commit() {
    let output = Command::new(env!("CARGO_BIN_EXE_tango-gateway"))
        .arg("--version")
        .env_clear()
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let expected = format!("tango-gateway {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&expected), "{text}");
    let commit = text
        .trim()
        .strip_prefix(&expected)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap();
    assert!(
        commit == "unknown"
            || (!commit.is_empty() && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{text}"
    );
}

#[test]
fn a_log_level_typo_fails_check_with_its_key_path() {
    let dir = material();
    let yaml = good_yaml(dir.path()).replacen("routes:", "log: { level: infoo }\nroutes:", 1);
    assert_refused(dir.path(), &yaml, "log.level");
}

#[test]
fn the_committed_schema_is_what_the_binary_prints() {
    let output = Command::new(env!("CARGO_BIN_EXE_tango-gateway"))
        .arg("schema")
        .env_clear()
        .output()
        .unwrap();
    assert!(output.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/gateway.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        printed, committed,
        "config/gateway.schema.json is stale: tango-gateway schema > config/gateway.schema.json"
    );
    // Typos are refused by the schema as by the loader.
    assert_eq!(printed["additionalProperties"], serde_json::json!(false));
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/gateway.example.yaml"
    ))
    .unwrap();
    assert!(example.starts_with("# yaml-language-server: $schema=./gateway.schema.json"));
}

/// Runs `check` on `yaml`, expects exit 0 and returns the `warning:` lines of stderr.
fn warnings_of(dir: &Path, yaml: &str) -> Vec<String> {
    let output = check(dir, yaml, Some(PLATFORM));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "stderr:\n{stderr}");
    stderr
        .lines()
        .filter(|line| line.starts_with("warning: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_good_local_config_has_no_warning() {
    let dir = material();
    assert_eq!(
        warnings_of(dir.path(), &good_yaml(dir.path())),
        Vec::<String>::new()
    );
}

#[test]
fn a_client_certificate_sent_to_the_standard_endpoint_is_a_warning() {
    let dir = material();
    let yaml = good_yaml(dir.path()).replace("https://localhost:8443", "https://api.tangocard.com");
    let warnings = warnings_of(dir.path(), &yaml);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("routes[0].upstream.url"),
        "{warnings:?}"
    );
    assert!(
        warnings[0].contains("mtls.tango-api.bhn.com"),
        "{warnings:?}"
    );
}

#[test]
fn an_mtls_endpoint_without_a_client_certificate_is_a_warning() {
    let dir = material();
    let yaml = format!(
        "{}{}",
        good_yaml(dir.path()),
        second_route("mtls", "/mtls/").replace(
            "https://localhost:8443",
            "https://mtls.sandbox-tango-api.bhn.com"
        )
    );
    let warnings = warnings_of(dir.path(), &yaml);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("routes[1].upstream.url"),
        "{warnings:?}"
    );
    assert!(
        warnings[0].contains("no client certificate"),
        "{warnings:?}"
    );
}

#[test]
fn one_credential_for_sandbox_and_production_is_a_warning_that_shows_no_secret() {
    let dir = material();
    let sandbox = good_yaml(dir.path()).replace(
        "https://localhost:8443",
        "https://mtls.sandbox-tango-api.bhn.com",
    );
    let production_route = sandbox
        .split("routes:\n")
        .nth(1)
        .unwrap()
        .replace("name: raas", "name: raas-prod")
        .replace("/raas/v2/", "/prod/")
        .replace("mtls.sandbox-tango-api.bhn.com", "mtls.tango-api.bhn.com");
    let warnings = warnings_of(dir.path(), &format!("{sandbox}{production_route}"));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("routes[0].auth and routes[1].auth"),
        "{warnings:?}"
    );
}

#[test]
fn a_certificate_expiring_within_30_days_is_a_warning() {
    let dir = material();
    let pki_ca = DevPki::generate().unwrap();
    let soon = pki_ca
        .ca
        .issue_client(&ClientSpec::new("soon-client").valid_for_days(10))
        .unwrap();
    let write = |name: &str, text: &str, mode: u32| {
        write_new_file(&dir.path().join(name), text.as_bytes(), mode, false).unwrap();
    };
    write("soon.pem", &soon.cert_pem, 0o644);
    write("soon.key", soon.key_pem.expose_secret(), KEY_FILE_MODE);
    let yaml = good_yaml(dir.path())
        .replace("client.pem", "soon.pem")
        .replace("client.key", "soon.key");
    let warnings = warnings_of(dir.path(), &yaml);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("routes[0].upstream.tls"),
        "{warnings:?}"
    );
    assert!(warnings[0].contains("expires in"), "{warnings:?}");
}

#[cfg(unix)]
#[test]
fn a_secret_file_readable_by_others_is_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let dir = material();
    let key_file = dir.path().join("api-key");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let warnings = warnings_of(dir.path(), &good_yaml(dir.path()));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("routes[0].auth.basic.password_file") && warnings[0].contains("0644"),
        "{warnings:?}"
    );
}

#[test]
fn a_proxy_must_be_plain_http_without_credentials_in_its_url() {
    let dir = material();
    let with = |proxy: &str| {
        good_yaml(dir.path()).replace(
            "      timeout: 15s\n",
            &format!("      timeout: 15s\n      proxy: \"{proxy}\"\n"),
        )
    };
    assert_refused(
        dir.path(),
        &with("https://proxy:3128"),
        "routes[0].upstream.proxy",
    );
    assert_refused(
        dir.path(),
        &with("http://u:p@proxy:3128"),
        "routes[0].upstream.proxy",
    );
    let output = check(
        dir.path(),
        &with("http://proxy.internal:3128"),
        Some(PLATFORM),
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn proxy_auth_without_a_proxy_is_refused() {
    let dir = material();
    let yaml = good_yaml(dir.path()).replace(
        "      timeout: 15s\n",
        "      timeout: 15s\n      proxy_auth: \"user:secret-proxy-pw\"\n",
    );
    assert_refused(dir.path(), &yaml, "routes[0].upstream.proxy_auth");
    let output = check(dir.path(), &yaml, Some(PLATFORM));
    assert!(!String::from_utf8_lossy(&output.stderr).contains("secret-proxy-pw"));
}

#[test]
fn unknown_keys_and_wrong_types_do_not_hide_the_other_problems() {
    let dir = material();
    let yaml = good_yaml(dir.path())
        .replace(
            "listen: \"127.0.0.1:0\"\nadmin:",
            "listen: \"127.0.0.1:0\"\nlsiten: x\nadmin:",
        )
        .replace("  mode: append\n", "  mode: append\n  frobnicate: true\n")
        .replace(
            "      timeout: 15s\n",
            "      timeout: fast\n      tiemout: 5s\n",
        )
        .replace("inbound:\n", "inbound:\n  max_body_bytes: big\n");
    let output = check(dir.path(), &yaml, Some(PLATFORM));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr:\n{stderr}");
    for key in [
        "lsiten: unknown field",
        "forwarded_for.frobnicate: unknown field",
        "routes[0].upstream.tiemout: unknown field",
        "routes[0].upstream.timeout: not a duration",
        "inbound.max_body_bytes: invalid type",
    ] {
        assert!(
            stderr.contains(key),
            "stderr does not say {key:?}:\n{stderr}"
        );
    }
}
