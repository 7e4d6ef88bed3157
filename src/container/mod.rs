//! Container records: <root>/containers/<id>/ with config.json, state.json, upper/, work/, log.
#![allow(dead_code)]

pub mod user;
