//! One file (or folder) per `lb` subcommand, each with its clap arguments.

pub mod check;
pub mod completions;
pub mod drain;
pub mod import;
pub mod realserver;
pub mod run;
pub mod show;
