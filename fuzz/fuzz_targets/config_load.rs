//! The YAML configuration loader (`config::load_with_env`: YAML, `${VAR}` interpolation,
//! the serde mirror, validation), PRODUCT.md §9.
//!
//! Invariant: any file content is either a configuration or a list of problems, never a
//! panic; every problem names the key path it concerns, or is about the file as a whole
//! (not YAML, not the shape of a configuration at the top level, unreadable); each line of
//! the errors' text starts with the file; no message quotes a secret read from a file.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tango_gateway::fuzzing::ConfigLoader;

/// Problems with no key path: about the file as a whole.
fn whole_file(message: &str) -> bool {
    const WHOLE_FILE: [&str; 2] = ["invalid YAML", "cannot read the configuration file"];
    // The top level itself has the wrong shape (a list, a scalar) or misses or has an unknown
    // key: serde's message then names that key in backquotes.
    WHOLE_FILE.iter().any(|start| message.starts_with(start))
        || message.starts_with("invalid type:")
        || message.contains('`')
}

fuzz_target!(|data: &[u8]| {
    static LOADER: OnceLock<ConfigLoader> = OnceLock::new();
    let loader = LOADER.get_or_init(|| ConfigLoader::new().expect("temp dir"));
    // Paths the fuzzer could spell that never end when read.
    let text = String::from_utf8_lossy(data);
    if ["/dev/", "/proc/", "/sys/"]
        .iter()
        .any(|p| text.contains(p))
    {
        return;
    }
    let Err((problems, shown)) = loader.load(data).expect("write the file") else {
        return;
    };
    assert!(!problems.is_empty(), "an error without a problem");
    for (path, message) in &problems {
        assert!(
            !path.is_empty() || whole_file(message),
            "no key path for {message:?}"
        );
        assert!(!message.is_empty(), "an empty message at {path:?}");
        assert!(
            text.contains(ConfigLoader::SECRET)
                || !(message.contains(ConfigLoader::SECRET) || path.contains(ConfigLoader::SECRET)),
            "a secret quoted at {path:?}"
        );
    }
    let file = loader.file().display().to_string();
    // Unless the fuzzer wrote the secret's text into the file itself (a key may be quoted).
    let quoted_from_file = !text.contains(ConfigLoader::SECRET);
    assert!(!quoted_from_file || !shown.contains(ConfigLoader::SECRET));
    let starts = shown.lines().filter(|line| line.starts_with(&file)).count();
    assert!(
        starts >= problems.len(),
        "a problem line without the file:\n{shown}"
    );
});
