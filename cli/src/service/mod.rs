//! `enable SERVICE` / `disable SERVICE` / `status`: switching the guard on for a systemd
//! service, and showing which server processes really run with it.

pub mod denials;
pub mod dropin;
pub mod enable;
pub mod procs;
pub mod status;
pub mod systemd;
