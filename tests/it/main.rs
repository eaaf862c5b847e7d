//! ledgit's integration tests, in one binary (as cargo and jj keep theirs): each module drives
//! the real `ledgit` binary, or the library and its server in process, on hermetic temporary
//! repositories made with the helpers of [`common`]. Tests that need a program from outside
//! (nginx, Caddy, Chromium, PostgreSQL, Python's libraries) are `#[ignore]`d with what they need;
//! `.ci/run` installs those programs and runs every test with `--include-ignored`, where a
//! missing program is a failure, never a skip.

mod common;

mod action;
mod architecture;
mod browser;
mod cli;
mod controller;
mod fixtures;
mod fleet;
mod gateway;
mod history;
mod index;
mod properties;
mod receipts;
mod reconcile;
mod renovate;
mod review;
mod serve;
mod server;
mod tokens;
