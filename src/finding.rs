//! Findings: what is wrong with a repository, as data. A finding has a stable code, a severity,
//! the repository-relative path, a 1-based line and column, a message and a hint. Checks return
//! findings and keep going; they never stop at the first problem. Rendering them (text with a
//! caret under the source line, JSON, GitHub annotations) is the command line's business.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How bad a finding is. Errors make a command exit 1; warnings are reported only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

macro_rules! codes {
    ($($variant:ident => $name:literal, $severity:ident, $summary:literal;)*) => {
        /// The stable code of a finding. Its kebab-case name is part of the output contract.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code { $($variant,)* }

        impl Code {
            /// Every code, in documentation order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The kebab-case name printed in every output format.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $name,)* }
            }

            /// The severity a finding of this code has.
            pub fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$severity,)* }
            }

            /// One line saying what the code means (for documentation and `--help`).
            pub fn summary(self) -> &'static str {
                match self { $(Code::$variant => $summary,)* }
            }

            /// The code with this name.
            pub fn from_name(name: &str) -> Option<Code> {
                match name { $($name => Some(Code::$variant),)* _ => None }
            }
        }
    };
}

codes! {
    YamlSyntax => "yaml-syntax", Error, "the file is not well-formed YAML";
    DuplicateKey => "duplicate-key", Error, "a mapping repeats a key";
    MultipleDocuments => "multiple-documents", Error, "the file holds more than one YAML document";
    EmptyFile => "empty-file", Error, "the file holds no YAML document";
    YamlTooComplex => "yaml-too-complex", Error, "the document exceeds the parser's safety limits (alias bomb, deep nesting)";
    NotUtf8 => "not-utf8", Error, "the file is not UTF-8 text";
    FileTooLarge => "file-too-large", Error, "the file is larger than 1 MiB and was not read";
    Symlink => "symlink", Error, "a symbolic link in the records folder (never followed)";
    UnknownField => "unknown-field", Error, "a field the format does not define";
    MissingField => "missing-field", Error, "a required field is absent";
    WrongType => "wrong-type", Error, "a field has the wrong type";
    VersionNotString => "version-not-string", Error, "an unquoted version that YAML reads as a number";
    InvalidApiVersion => "invalid-api-version", Error, "apiVersion is not ledgit/v1";
    InvalidKind => "invalid-kind", Error, "kind is not AgentDeployment";
    InvalidName => "invalid-name", Error, "an agent or environment name that is not a DNS label";
    InvalidVersion => "invalid-version", Error, "a version that is empty, too long or contains white space, control or invisible formatting characters";
    InvalidIssuer => "invalid-issuer", Error, "the token issuer in ledgit.yaml is not an https URL without query or fragment";
    InvalidSource => "invalid-source", Error, "a ledgit.dev/source annotation that is not <datasource>:<package>";
    UnknownEnvironment => "unknown-environment", Error, "the environment is not declared in ledgit.yaml";
    DuplicatePair => "duplicate-pair", Error, "the same (agent, environment) pair is declared in several files";
    PathMismatch => "path-mismatch", Error, "the record is not at <deployments>/<agent>/<environment>.yaml";
    PrivateKey => "private-key", Error, "private key material committed to the repository";
    Unscanned => "unscanned-file", Error, "a tracked file that could not be scanned for private keys (too large or unreadable)";
    DuplicateToken => "duplicate-token", Error, "the token ledger lists the same token id twice";
    InvalidLedgerValue => "invalid-ledger-value", Error, "a token ledger entry with a malformed id, commit or time";
    InvalidRevocation => "invalid-revocation", Error, "a revocation list entry with a malformed token id or time";
    InternalError => "internal-error", Error, "ledgit failed while checking the file (a defect in ledgit: please report it)";
    UnparsableRecord => "unparsable-record", Warning, "a record that did not parse at some commit of the history";
    PromotionMissing => "promotion-missing", Error, "a version enters an environment before it ran in the one it promotes from";
    SoakNotMet => "soak-not-met", Error, "a version enters an environment before it ran upstream for the soak time";
    Downgrade => "downgrade", Error, "a version goes down to one that never ran in that environment";
    PolicyOverride => "policy-override", Warning, "a policy rule waived by an annotation on the record";
    ReceiptMalformed => "receipt-malformed", Error, "a line of a receipts note that is not a DSSE envelope over a ledgit apply statement (altered)";
    ReceiptSignature => "receipt-signature", Error, "a receipt whose signature does not verify with its reconciler's key (altered after signing, or forged)";
    ReceiptUnknownKey => "receipt-unknown-key", Error, "a receipt signed by a key ledgit.yaml does not list under reconcilers: at its commit (unknown or removed)";
    ReceiptEnvironment => "receipt-environment", Error, "a receipt for an environment its reconciler may not apply";
    ReceiptMoved => "receipt-moved", Error, "a receipt attached to another commit than the one it names";
    ReceiptUndeclared => "receipt-undeclared", Error, "a receipt for a version or content the record did not declare at that commit";
    ReceiptOffBranch => "receipt-off-branch", Error, "a receipt attached to a commit that is not on the tracked branch (its keys are not the branch's)";
    DeclaredNotApplied => "declared-not-applied", Error, "a version declared for longer than the grace period with no receipt of its apply";
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Code::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown code {name}")))
    }
}

/// One problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub code: Code,
    pub severity: Severity,
    /// Repository-relative path with `/` separators.
    pub path: String,
    /// 1-based line; 1 where the problem concerns the whole file.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
    pub message: String,
    pub hint: String,
    /// The source line the finding points at, for rendering with a caret.
    #[serde(skip)]
    pub source_line: Option<String>,
}

impl Finding {
    pub fn new(code: Code, path: &str, line: u32, column: u32, message: impl Into<String>) -> Self {
        Finding {
            code,
            severity: code.severity(),
            path: path.to_string(),
            line: line.max(1),
            column: column.max(1),
            message: message.into(),
            hint: String::new(),
            source_line: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = hint.into();
        self
    }

    /// Attaches the text of the finding's line, taken from the file's source.
    pub fn with_source(mut self, text: &str) -> Self {
        self.source_line = text
            .lines()
            .nth(self.line as usize - 1)
            .map(|l| l.trim_end_matches('\r').to_string());
        self
    }
}

/// Sorts findings the way every output shows them: by path, line, column, code.
pub fn sort(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        (&a.path, a.line, a.column, a.code).cmp(&(&b.path, b.line, b.column, b.code))
    });
}

/// Whether any finding is an error (which makes a command exit 1).
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_kebab_case() {
        for &code in Code::ALL {
            let name = code.as_str();
            assert_eq!(Code::from_name(name), Some(code));
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name}"
            );
        }
    }

    #[test]
    fn source_line_is_attached_without_line_ending() {
        let f = Finding::new(Code::WrongType, "a.yaml", 2, 3, "x").with_source("a\r\nbcd\r\n");
        assert_eq!(f.source_line.as_deref(), Some("bcd"));
    }
}
