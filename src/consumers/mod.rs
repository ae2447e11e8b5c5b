//! Consumers: what takes the kinds' profiles out of the process.

pub mod collector;
pub mod files;
pub mod http;
pub mod http_pages;
pub mod ledger;
