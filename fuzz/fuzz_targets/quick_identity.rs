//! Differential: the fast identity reader against the YAML parser on the same text. Where the
//! fast reader answers, it answers as the parser does; elsewhere it gives up.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(quick) = ledgit::model::record::quick_identity(text) {
        assert_eq!(quick, ledgit::model::record::parsed_identity(text), "{text:?}");
    }
});
