//! The agent deployment: the record that one version of an agent is the current release in one
//! environment, as the history derives it from the tip of the tracked branch (its record file,
//! its generation, since when its version runs). Tokens are scoped to it; the views, the
//! reconciler and the server all speak of deployments in these terms.

/// One agent deployment at a commit: a pair (agent, environment) and its current record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Deployment {
    pub agent: String,
    pub environment: String,
    pub version: String,
    pub path: String,
    /// The commit at which the pair last came into existence.
    pub generation: String,
    /// When the version last changed (committer time, RFC 3339).
    pub updated_at: String,
    pub updated_commit: String,
    #[serde(skip)]
    pub updated_time: i64,
    #[serde(skip)]
    pub generation_time: i64,
}
