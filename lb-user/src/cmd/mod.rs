//! One file per `lb` subcommand.

pub mod check;
pub mod run;
pub mod show;
