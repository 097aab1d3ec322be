//! `pgha config set postgresql.NAME=VALUE` checked by PostgreSQL's own parser before it is
//! stored: a misspelt name or an unparsable value, once in every member's configuration file,
//! would stop each member's next start ("configuration file contains errors"), the primary's
//! after a crash included.

use pgha_pg::binaries::PgBinaries;
use pgha_pg::osuser::RunAs;

use crate::dynamic::{split_assignment, PARAMETER_PREFIX};
use crate::ops::{OpError, Refusal};

/// The PostgreSQL parameters `assignments` set (name, value); removals (`postgresql.NAME=`)
/// and assignments that do not parse are left out (the latter are refused when applied).
pub fn parameters_set(assignments: &[String]) -> Vec<(String, String)> {
    assignments
        .iter()
        .filter_map(|a| split_assignment(a).ok())
        .filter_map(|(key, value)| {
            let name = key.strip_prefix(PARAMETER_PREFIX)?;
            (!value.is_empty()).then(|| (name.to_string(), value.to_string()))
        })
        .collect()
}

/// Refuses `assignments` whose PostgreSQL parameters the server programs in `bins` refuse.
pub async fn check(
    bins: &PgBinaries,
    run_as: &RunAs,
    assignments: &[String],
) -> Result<(), OpError> {
    let settings = parameters_set(assignments);
    pgha_pg::settings_check::check_settings(bins, run_as, &settings)
        .await
        .map_err(|e| OpError::Refused(Refusal::Parameters(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_parameters_given_a_value_are_checked() {
        let given: Vec<String> = [
            "ttl_ms=9000",
            "postgresql.work_mem = 8MB",
            "postgresql.shared_buffers=",
            "postgresql.nothing",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        assert_eq!(
            parameters_set(&given),
            vec![("work_mem".to_string(), "8MB".to_string())]
        );
    }
}
