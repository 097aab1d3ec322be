//! What a member keeps of its cluster beside its data directory: the cluster's identifier
//! (`cluster-id`) and the configuration it last read from the store (`cluster-config`, the
//! JSON the store holds), for an agent that starts while the store has none (etcd lost its
//! data): it never takes the store for an empty one, and puts back what the cluster ran.

use crate::beneath::Found;
use crate::error::Result;
use crate::instance::Instance;

const FILE: &str = "cluster-config";

impl Instance {
    /// The cluster's system identifier as this member last saw it in the store, kept beside its
    /// data directory (`cluster-id`): a member whose data is gone still knows it belonged to a
    /// cluster, and never takes a store that lost its keys for an empty one.
    pub fn remembered_cluster(&self) -> Option<u64> {
        let path = self.member_dir.join("cluster-id");
        let text = crate::beneath::read_to_string(&path, &self.run_as).ok()?;
        text.trim().parse().ok()
    }

    /// Keeps `system_id` as [`Self::remembered_cluster`] (once the member directory exists).
    pub fn remember_cluster(&self, system_id: u64) -> Result<()> {
        self.keep_beside_data("cluster-id", &format!("{system_id}\n"))
    }

    /// Writes `text` as `file` in the member directory (0600), once that directory exists:
    /// what the member keeps of its cluster across restarts.
    pub fn keep_beside_data(&self, file: &str, text: &str) -> Result<()> {
        if !self.member_dir.is_dir() {
            return Ok(());
        }
        let path = self.member_dir.join(file);
        crate::beneath::write(&path, text.as_bytes(), 0o600, &self.run_as)
    }
}

/// The configuration kept by [`remember`], as JSON; `None` when none was kept, an error when
/// it could not be read.
pub fn remembered(inst: &Instance) -> Result<Option<String>> {
    let path = inst.member_dir.join(FILE);
    match crate::beneath::found(&path, &inst.run_as) {
        Found::Absent | Found::NotAFile => Ok(None),
        Found::Unknown(e) => Err(e),
        Found::File => crate::beneath::read_to_string(&path, &inst.run_as).map(Some),
    }
}

/// Keeps `json` as [`remembered`] (once the member directory exists).
pub fn remember(inst: &Instance, json: &str) -> Result<()> {
    inst.keep_beside_data(FILE, json)
}

#[cfg(test)]
mod tests {
    use super::{remember, remembered};
    use crate::instance::Instance;

    /// What is kept comes back across a new `Instance` (an agent restarted); nothing is kept
    /// before the member directory exists.
    #[test]
    fn the_configuration_kept_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let bins = crate::PgBinaries::discover(None).expect("PostgreSQL's programs");
        let run_as = crate::RunAs::detect("postgres").expect("the postgres OS user");
        let inst = Instance::new("n2", &dir.path().join("n2"), bins.clone(), run_as.clone());
        remember(&inst, r#"{"ttl_ms":3000}"#).unwrap();
        assert_eq!(
            remembered(&inst).unwrap(),
            None,
            "kept without a member directory"
        );
        inst.create_member_dir().unwrap();
        remember(&inst, r#"{"ttl_ms":3000}"#).unwrap();
        let again = Instance::new("n2", &dir.path().join("n2"), bins, run_as);
        assert_eq!(
            remembered(&again).unwrap().as_deref(),
            Some(r#"{"ttl_ms":3000}"#)
        );
    }
}
