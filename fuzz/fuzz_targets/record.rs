//! A record file through the whole check (YAML layer, shape checks, findings): no panic, and
//! every finding points inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = ledgit::model::config::parse(
        "ledgit.yaml",
        "apiVersion: ledgit/v1\nkind: Config\nenvironments:\n  - name: staging\n  - name: production\n",
    )
    .expect("the fixed config parses");
    let parsed = ledgit::model::record::parse("deployments/support-bot/production.yaml", text, &config);
    // YAML breaks lines at CR LF, CR and LF.
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = normalized.split('\n').collect();
    for f in &parsed.findings {
        assert!(f.line >= 1 && f.column >= 1, "{f:?}");
        assert!(
            (f.line as usize) <= lines.len() + 1,
            "line beyond the file: {f:?}"
        );
        if let Some(line) = lines.get(f.line as usize - 1) {
            assert!(
                (f.column as usize) <= line.chars().count() + 2,
                "column beyond its line: {f:?}"
            );
        }
    }
});
