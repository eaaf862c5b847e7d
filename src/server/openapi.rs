//! The OpenAPI 3.1 document of the server (`schema/openapi.yaml`, compiled into the binary),
//! served as JSON at `/openapi.json`.

/// The document as written.
pub const YAML: &str = include_str!("../../schema/openapi.yaml");

/// The document as JSON. A test parses it, so a broken document cannot ship.
pub fn json() -> Vec<u8> {
    serde_saphyr::from_str::<serde_json::Value>(YAML)
        .ok()
        .and_then(|doc| serde_json::to_vec(&doc).ok())
        .unwrap_or_else(|| b"{}".to_vec())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_parses_and_lists_its_paths() {
        let doc: serde_json::Value = serde_saphyr::from_str(super::YAML).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["paths"].as_object().unwrap().len() >= 15);
        assert_ne!(super::json(), b"{}");
    }
}
