//! The store against a real Redis.

mod budget;
mod claim;
mod cluster;
mod directory;
mod helpers;
mod pages;
mod preview;
mod render_log;
mod service_tokens;
mod usage;
mod usage_hours;
mod warm;
