//! Everything that holds the BPF object and its maps: the loader (load,
//! attach, pins), the writer (the only code that writes a map) and
//! read-only pinned access for `lb show`.

mod check_ports;
pub(crate) mod elem;
pub mod loader;
pub mod migrate;
pub mod pinned;
pub mod writer;

pub use loader::Sizes;
pub use pinned::Pinned;
pub use writer::Writer;
