//! Waits on the cluster that fail with its status and logs: roles, convergence, sync states.

use super::*;

use std::collections::{BTreeMap, BTreeSet};

use pgha_testkit::{checksum, poll, poll_async, streaming_standbys, tail, tail_of};

impl Cluster {
    /// Fails the test with the status, the history, the `pgha up` log and each member's
    /// PostgreSQL log.
    pub fn fail(&self, what: &str) -> ! {
        let mut pg_logs = String::new();
        for k in 1..=self.up.members {
            let file = self.up.dir.join(format!("n{k}")).join("postgresql.log");
            let tail = tail(&file, 40);
            pg_logs.push_str(&format!("--- n{k} postgresql.log (tail) ---\n{tail}\n"));
        }
        panic!(
            "{what}\nstatus: {:#?}\nhistory: {}\nlog (tail):\n{}\n{pg_logs}",
            self.up.status(),
            String::from_utf8_lossy(&self.run("history", &[]).stdout),
            tail_of(&self.up.log(), 300)
        )
    }

    /// Waits until `check(status)` returns Some.
    pub fn wait_status<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Value) -> Option<T>,
    ) -> T {
        poll(timeout, Duration::from_millis(100), || {
            self.up.status().as_ref().and_then(&mut check)
        })
        .unwrap_or_else(|| self.fail(&format!("timed out after {timeout:?} waiting for {what}")))
    }

    /// Waits until a member other than those in `not` leads and runs as primary.
    pub fn wait_new_primary(&self, not: &[&str]) -> String {
        self.wait_status("a new primary", self.converge, |s| {
            primary_of(s).filter(|p| !not.contains(&p.as_str()))
        })
    }

    /// Waits until `primary` leads, the members in `down` are stopped, and every other member
    /// streams from it, in `pgha status` and in the primary's pg_stat_replication (where no one
    /// else streams).
    pub async fn wait_converged(&self, primary: &str, down: &[&str]) {
        let standbys: BTreeSet<String> = MEMBERS
            .into_iter()
            .filter(|n| *n != primary && !down.contains(n))
            .map(String::from)
            .collect();
        let standbys = &standbys;
        let converged = poll_async(self.converge, Duration::from_millis(100), || async move {
            let in_status = self.up.status().is_some_and(|s| {
                primary_of(&s).as_deref() == Some(primary)
                    && members(&s).iter().all(|m| {
                        let name = m["name"].as_str().unwrap();
                        if down.contains(&name) {
                            m["state"] == "stopped"
                        } else {
                            // streaming as PostgreSQL says, and as its record says (what a
                            // switchover is checked against: it follows within a loop)
                            name == primary
                                || (m["role"] == "standby"
                                    && m["state"] == "streaming"
                                    && m["upstream"] == primary)
                        }
                    })
            });
            let streaming =
                in_status && streaming_standbys(&self.member_url(primary)).await == *standbys;
            streaming.then_some(())
        })
        .await;
        if converged.is_none() {
            self.fail(&format!(
                "not converged on {primary} (standbys {standbys:?}, down {down:?}) after {:?}",
                self.converge
            ));
        }
    }

    /// Waits until every member in `names` holds exactly the rows of the primary; returns the
    /// primary's (count, checksum).
    pub async fn wait_identical(&self, primary: &str, names: &[&str]) -> (i64, String) {
        let expected = checksum(&self.member_url(primary))
            .await
            .unwrap_or_else(|| self.fail("cannot read the primary's rows"));
        for name in names {
            let url = self.member_url(name);
            let (url, expected) = (&url, &expected);
            let same = poll_async(self.converge, Duration::from_millis(100), || async move {
                (checksum(url).await.as_ref() == Some(expected)).then_some(())
            })
            .await;
            if same.is_none() {
                let got = checksum(url).await;
                self.fail(&format!(
                    "{name} does not hold the primary's rows: {got:?} != {expected:?}"
                ));
            }
        }
        expected
    }

    /// Waits until `states` is exactly the standbys' sync_state in `pgha status`; how long
    /// that took.
    pub fn wait_sync_states(&self, states: &[(&str, &str)], timeout: Duration) -> Duration {
        let t0 = std::time::Instant::now();
        let want: BTreeMap<String, String> = states
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect();
        self.wait_status(&format!("sync states {want:?}"), timeout, |s| {
            (sync_states(s) == want).then_some(())
        });
        t0.elapsed()
    }

    /// The one member whose sync_state is `sync`, once there is exactly one and the published
    /// set holds every streaming standby.
    pub fn wait_settled_sync(&self, timeout: Duration) -> String {
        self.wait_status("a settled synchronous standby", timeout, |s| {
            let states = sync_states(s);
            let sync: Vec<&String> = states
                .iter()
                .filter(|(_, v)| *v == "sync")
                .map(|(k, _)| k)
                .collect();
            let streaming = members(s)
                .iter()
                .filter(|m| m["state"] == "streaming")
                .count();
            let set = s["synchronous"]["set"].as_array().map_or(0, |a| a.len());
            (primary_of(s).is_some() && sync.len() == 1 && streaming == 2 && set == 2)
                .then(|| sync[0].clone())
        })
    }
}
