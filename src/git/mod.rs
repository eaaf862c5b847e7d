//! Git and the history engine: opening the repository and resolving revisions ([`repo`]),
//! deriving from the commit log what ran where and since when ([`history`], with its
//! [`strings`] table and the raw [`treediff`]), keeping that
//! history in an on-disk index so that a command reads it in milliseconds ([`index`]), loading
//! one commit the way both front ends need it ([`load`]), and creating a new repository
//! ([`init`]). It stands on the model and on tokens (loading builds the token verifier of a
//! commit); review, the reconciler and the views stand on it.

pub mod history;
pub mod index;
pub mod init;
pub mod load;
pub mod repo;
pub mod strings;
pub mod treediff;
