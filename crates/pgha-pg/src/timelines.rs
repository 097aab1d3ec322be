//! Timelines a promotion must not reuse: placeholder history files for those PostgreSQL does
//! not know of, which it counts when it picks the timeline a promotion starts.

use crate::error::Result;
use crate::instance::Instance;

/// The name of timeline `tli`'s history file in `pg_wal`.
fn history_file(tli: u32) -> String {
    format!("{tli:08X}.history")
}

/// Makes PostgreSQL's next promotion start a timeline above `newest`. PostgreSQL takes one
/// above the newest timeline whose history file it finds, counting up without a gap from the
/// one it recovers on; a member cut off while another was promoted never received that
/// timeline's history, and would start a timeline of the same number (two histories that
/// pg_rewind cannot tell apart). For each timeline it does not know of up to `newest`, a
/// history file holding only a comment: its history names no parent, so recovery never
/// follows it ("not a child of database system timeline"), and nobody asks a primary for the
/// history of a timeline outside its own. Returns the timelines reserved.
pub async fn reserve_through(instance: &Instance, newest: u32) -> Result<Vec<u32>> {
    let wal = instance.data_dir().join("pg_wal");
    let exists = |tli: u32| crate::beneath::is_file(&wal.join(history_file(tli)), &instance.run_as);
    let mut known = instance.controldata().await?.checkpoint_timeline.max(1);
    while exists(known + 1) {
        known += 1;
    }
    let mut reserved = Vec::new();
    for tli in known + 1..=newest {
        let text = format!(
            "# pgha: timeline {tli} belongs to a history this member never received (another \
             member's promotion); this file only keeps a promotion here from starting another \
             timeline {tli}\n"
        );
        crate::beneath::write(
            &wal.join(history_file(tli)),
            text.as_bytes(),
            0o600,
            &instance.run_as,
        )?;
        reserved.push(tli);
    }
    Ok(reserved)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A standby on timeline 1 that never received timeline 2's history (another member's
    /// promotion) is promoted with timeline 2 reserved: PostgreSQL starts timeline 3, forked
    /// from timeline 1, and recovery never followed the placeholder.
    #[tokio::test]
    async fn a_promotion_starts_a_timeline_above_those_reserved() {
        let standby = crate::test_standby::TestStandby::new("n3").await;
        let inst = &standby.inst;
        standby.start().await;
        let reserved = reserve_through(inst, 2).await.unwrap();
        assert_eq!(reserved, vec![2]);
        assert!(
            reserve_through(inst, 2).await.unwrap().is_empty(),
            "reserved twice"
        );
        // Until it is promoted, the member is on timeline 1, as its probe says (before: the
        // placeholder counted as a timeline it had received WAL on).
        let (client, connection) = tokio_postgres::Config::new()
            .host_path(&inst.member_dir)
            .port(5432)
            .user("postgres")
            .password("secret")
            .dbname("postgres")
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let probed = crate::probe::probe(&client, "n3").await.unwrap();
        assert_eq!(probed.timeline, Some(1), "{probed:?}");
        drop(client);
        standby.pg_ctl(&["-w", "promote"]).await;
        let history = std::fs::read_to_string(inst.data_dir().join("pg_wal").join(history_file(3)));
        standby.pg_ctl(&["-m", "fast", "-w", "stop"]).await;
        let history = history.unwrap_or_else(|e| {
            panic!(
                "no history of timeline 3 ({e}):\n{}",
                std::fs::read_to_string(&standby.log).unwrap_or_default()
            )
        });
        assert!(
            history.starts_with("1\t"),
            "timeline 3 does not fork from timeline 1: {history}"
        );
        assert_eq!(inst.controldata().await.unwrap().checkpoint_timeline, 3);
    }
}
