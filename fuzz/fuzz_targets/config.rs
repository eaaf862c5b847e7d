//! `ledgit.yaml` through its check: no panic, and every finding points inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(findings) = ledgit::model::config::parse("ledgit.yaml", text) {
        let lines = text
            .replace("\r\n", "\n")
            .replace('\r', "\n")
            .split('\n')
            .count();
        for f in &findings {
            assert!(f.line >= 1 && f.column >= 1, "{f:?}");
            assert!(
                (f.line as usize) <= lines + 1,
                "line beyond the file: {f:?}"
            );
        }
    }
});
