//! Small building blocks the rest of the library stands on, none of which knows what an agent
//! deployment is: writing files whole (temporary file, then rename), reading and printing
//! times, YAML with line and column spans, HMAC-SHA256 for signed webhooks, hex, secrets drawn at random, the scan
//! for secrets pasted into records, and the rules for text that reaches a reader. Nothing here imports another group.

pub mod fsutil;
pub mod hex;
pub mod hmac;
pub mod random;
pub mod secret;
pub mod text;
pub mod when;
pub mod yaml;
