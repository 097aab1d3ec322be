//! The members a member formed its cluster with, kept beside its data directory (`peers`, one
//! name a line): a store that no longer holds the cluster is led again only by a majority of
//! them (see the core's `StoreWithoutItsPeers`), also after the agent restarts.

use crate::error::Result;
use crate::instance::Instance;

const FILE: &str = "peers";

/// The names kept by [`remember`] (none when the file is absent or unreadable).
pub fn remembered(inst: &Instance) -> Vec<String> {
    let path = inst.member_dir.join(FILE);
    let Ok(text) = crate::beneath::read_to_string(&path, &inst.run_as) else {
        return Vec::new();
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// Keeps `names` (once the member directory exists).
pub fn remember(inst: &Instance, names: &[String]) -> Result<()> {
    if !inst.member_dir.is_dir() {
        return Ok(());
    }
    let text: String = names.iter().map(|n| format!("{n}\n")).collect();
    crate::beneath::write(
        &inst.member_dir.join(FILE),
        text.as_bytes(),
        0o600,
        &inst.run_as,
    )
}
