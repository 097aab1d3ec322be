//! The members a member formed its cluster with, kept beside its data directory (`peers`, one
//! name a line): a store that no longer holds the cluster is led again only by a majority of
//! them (see the core's `StoreWithoutItsPeers`), also after the agent restarts.

use crate::error::Result;
use crate::instance::Instance;

const FILE: &str = "peers";

/// The names kept by [`remember`] (none when none were kept; an error when the file cannot be
/// read, never "none": the guard would be off).
pub fn remembered(inst: &Instance) -> Result<Vec<String>> {
    let text = inst.kept_beside_data(FILE)?.unwrap_or_default();
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// Keeps `names` (once the member directory exists).
pub fn remember(inst: &Instance, names: &[String]) -> Result<()> {
    let text: String = names.iter().map(|n| format!("{n}\n")).collect();
    inst.keep_beside_data(FILE, &text)
}

#[cfg(test)]
mod tests {
    use super::{remember, remembered};
    use crate::instance::Instance;

    /// The names come back as kept, across a new `Instance` (an agent restarted); nothing is
    /// written before the member directory exists, and nothing is read from a missing file.
    #[test]
    fn the_peers_kept_are_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let bins = crate::PgBinaries::discover(None).expect("PostgreSQL's programs");
        let run_as = crate::RunAs::detect("postgres").expect("the postgres OS user");
        let inst = Instance::new("n2", &dir.path().join("n2"), bins.clone(), run_as.clone());
        let names = vec!["n1".to_string(), "n2".to_string(), "n3".to_string()];
        remember(&inst, &names).unwrap();
        assert!(
            remembered(&inst).unwrap().is_empty(),
            "written without a member directory"
        );
        inst.create_member_dir().unwrap();
        assert!(remembered(&inst).unwrap().is_empty());
        remember(&inst, &names).unwrap();
        let again = Instance::new("n2", &dir.path().join("n2"), bins, run_as);
        assert_eq!(remembered(&again).unwrap(), names);
        remember(&again, &names[..2]).unwrap();
        assert_eq!(remembered(&inst).unwrap(), names[..2].to_vec());
    }

    /// Found by review: a `peers` file that could not be read counted as no peers, and the
    /// guard against a store that lost the cluster was off for that agent's life.
    #[test]
    fn peers_that_cannot_be_read_are_an_error_not_none() {
        let (_dir, inst) = crate::test_standby::test_instance("n2");
        inst.create_member_dir().unwrap();
        std::fs::create_dir(inst.member_dir.join("peers")).unwrap();
        let error = remembered(&inst).unwrap_err();
        assert!(error.to_string().contains("not a regular file"), "{error}");
    }
}
