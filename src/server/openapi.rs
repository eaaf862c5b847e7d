//! The OpenAPI 3.1 document of the server (`schema/openapi.yaml`, compiled into the binary),
//! served as JSON at `/openapi.json`.

/// The document as written.
pub const YAML: &str = include_str!("../../schema/openapi.yaml");

/// The document as JSON, its `servers` the server's public URL (where clients generated
/// from it will send their requests). A test parses it, so a broken document cannot ship.
pub fn json(public_url: &str) -> Vec<u8> {
    serde_saphyr::from_str::<serde_json::Value>(YAML)
        .ok()
        .and_then(|mut doc| {
            doc["servers"] = serde_json::json!([{"url": public_url.trim_end_matches('/')}]);
            serde_json::to_vec(&doc).ok()
        })
        .unwrap_or_else(|| b"{}".to_vec())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_parses_and_lists_its_paths() {
        let doc: serde_json::Value = serde_saphyr::from_str(super::YAML).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["paths"].as_object().unwrap().len() >= 15);
        let served: serde_json::Value =
            serde_json::from_slice(&super::json("https://ledgit.example.com/")).unwrap();
        assert_eq!(
            served["servers"],
            serde_json::json!([{"url": "https://ledgit.example.com"}])
        );
    }
}
