//! The marker of a pg_rewind left unfinished, beside the data directory: where, whether, clearing.

use std::path::PathBuf;

use crate::error::Result;
use crate::instance::Instance;

impl Instance {
    /// Present from just before pg_rewind changes the data directory until it has finished:
    /// outside the data directory, which pg_rewind makes a copy of the source's.
    pub fn rewind_marker(&self) -> PathBuf {
        self.member_dir.join("rewind-incomplete")
    }

    /// A pg_rewind of this data directory began and did not finish (it failed, or the agent or
    /// host died): its files may mix two histories; a re-clone moves it aside.
    pub fn rewind_incomplete(&self) -> bool {
        crate::beneath::is_file(&self.rewind_marker(), &self.run_as)
    }

    /// [`Instance::rewind_incomplete`], or its marker cannot be looked at: never started then.
    pub fn rewind_maybe_incomplete(&self) -> bool {
        let marker = crate::beneath::found(&self.rewind_marker(), &self.run_as);
        !matches!(marker, crate::beneath::Found::Absent)
    }

    /// Forgets an incomplete rewind once its data directory is no longer in place.
    pub fn clear_rewind_marker(&self) -> Result<()> {
        crate::beneath::remove(&self.rewind_marker(), &self.run_as)
    }
}
