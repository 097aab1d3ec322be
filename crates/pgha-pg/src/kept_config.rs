//! What a member keeps of its cluster beside its data directory: the cluster's identifier
//! (`cluster-id`) and the configuration it last read from the store (`cluster-config`, the
//! JSON the store holds), for an agent that starts while the store has none (etcd lost its
//! data): it never takes the store for an empty one, and puts back what the cluster ran.

use crate::beneath::Found;
use crate::error::{PgError, Result};
use crate::instance::Instance;

const FILE: &str = "cluster-config";

impl Instance {
    /// The cluster's system identifier as this member last saw it in the store, kept beside its
    /// data directory (`cluster-id`): a member whose data is gone still knows it belonged to a
    /// cluster, and never takes a store that lost its keys for an empty one. `None` when none
    /// was kept; an error when the file cannot be read or holds no identifier (never "none":
    /// the guard would be off).
    pub fn remembered_cluster(&self) -> Result<Option<u64>> {
        let Some(text) = self.kept_beside_data("cluster-id")? else {
            return Ok(None);
        };
        let id = text.trim();
        id.parse().map(Some).map_err(|_| PgError::KeptFileInvalid {
            path: self.member_dir.join("cluster-id"),
            problem: format!("holds {id:?}, not a system identifier"),
        })
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

    /// What [`Self::keep_beside_data`] kept as `file`: `None` when nothing is there, an error
    /// when it cannot be looked at or read, or something else than a file stands there.
    pub fn kept_beside_data(&self, file: &str) -> Result<Option<String>> {
        let path = self.member_dir.join(file);
        match crate::beneath::found(&path, &self.run_as) {
            Found::Absent => Ok(None),
            Found::NotAFile => Err(PgError::KeptFileInvalid {
                path,
                problem: "is not a regular file".to_string(),
            }),
            Found::Unknown(e) => Err(e),
            Found::File => crate::beneath::read_to_string(&path, &self.run_as).map(Some),
        }
    }
}

/// The configuration kept by [`remember`], as JSON; `None` when none was kept, an error when
/// it could not be read.
pub fn remembered(inst: &Instance) -> Result<Option<String>> {
    inst.kept_beside_data(FILE)
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

    /// A `cluster-id` that cannot be read or holds no identifier is an error, not "none": the
    /// member would take a store that lost its keys for an empty one.
    #[test]
    fn a_cluster_id_that_cannot_be_read_is_an_error_not_none() {
        let (_dir, inst) = crate::test_standby::test_instance("n2");
        assert_eq!(inst.remembered_cluster().unwrap(), None);
        inst.create_member_dir().unwrap();
        inst.remember_cluster(7).unwrap();
        assert_eq!(inst.remembered_cluster().unwrap(), Some(7));
        std::fs::write(inst.member_dir.join("cluster-id"), "7\0garbage").unwrap();
        let error = inst.remembered_cluster().unwrap_err();
        assert!(
            error.to_string().contains("not a system identifier"),
            "{error}"
        );
        std::fs::remove_file(inst.member_dir.join("cluster-id")).unwrap();
        std::fs::create_dir(inst.member_dir.join("cluster-id")).unwrap();
        assert!(inst.remembered_cluster().is_err());
    }
}
