//! The version edit: the first line of the input is the new version, the rest the record. After
//! an edit that succeeds, the file parses with the new version and every byte outside the
//! version scalar is unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Some((version, text)) = input.split_once('\n') else {
        return;
    };
    let Ok(out) = ledgit::model::edit::set_version("p.yaml", text, version) else {
        return;
    };
    let body = ledgit::support::yaml::strip_bom(&out);
    let root = ledgit::support::yaml::parse(body).expect("an edited file parses");
    assert_eq!(root.get("version").and_then(|n| n.as_str()), Some(version));
    let old_body = ledgit::support::yaml::strip_bom(text);
    let old = ledgit::support::yaml::parse(old_body).expect("the edit succeeded, so the file parsed");
    let (start, len) = old
        .get("version")
        .and_then(|n| n.bytes)
        .expect("a version scalar");
    let bom = text.len() - old_body.len();
    let (before, after) = (&text[..bom + start], &text[bom + start + len..]);
    assert!(out.starts_with(before), "bytes before the version changed");
    assert!(out.ends_with(after), "bytes after the version changed");
});
