//! Review and policy: what a change of the tracked branch means in deployments and settings,
//! and whether the gates of `ledgit.yaml` allow it. The policy and its context from history
//! ([`policy`]), a change reviewed as `diff` and `check` see it ([`change`]), planning a change
//! of versions ([`plan`]), the promotion and `set` workflow in the work tree ([`edit`]), settings
//! changes ([`settings`]) and the server's proposals ([`proposal`]) live here, once, for both
//! front ends.

pub mod change;
pub mod edit;
pub mod plan;
pub mod policy;
pub mod proposal;
pub mod settings;
