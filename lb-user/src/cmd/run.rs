//! `lb run -c FILE`: the agent, in the foreground.

use std::path::PathBuf;

use crate::agent;

pub fn run(config: PathBuf, keep_pinned: bool) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(agent::run(agent::Options {
        config,
        keep_pinned,
    }))
}
