//! Reading the leader's timeline history file (`pg_wal/<tli>.history`), so a rejoining member
//! compares its WAL with the leader's real switch points instead of ones rebuilt from events.

use std::time::Duration;

use pgha_core::rejoin::TimelineSwitch;
use pgha_core::{Lsn, Timeline};
use pgha_pg::conf::Upstream;

use crate::spec::NodeSpec;

/// Fetches and parses the history file of `timeline` from the member at `leader`.
pub async fn fetch(
    spec: &NodeSpec,
    leader: &Upstream,
    timeline: u32,
) -> Option<Vec<TimelineSwitch>> {
    if timeline <= 1 {
        return Some(Vec::new());
    }
    let client = spec.connect(leader, Duration::from_secs(2)).await.ok()?;
    let file = format!("pg_wal/{timeline:08X}.history");
    let row = tokio::time::timeout(
        Duration::from_secs(2),
        client.query_one("SELECT pg_read_file($1)", &[&file]),
    )
    .await
    .ok()?
    .ok()?;
    Some(parse(&row.get::<_, String>(0)))
}

/// Parses history file lines `parent_tli <tab> switch_lsn <tab> reason`.
pub fn parse(text: &str) -> Vec<TimelineSwitch> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let timeline = fields.next()?.parse().ok()?;
            let lsn = pgha_pg::instance::parse_lsn(fields.next()?)?;
            Some(TimelineSwitch {
                timeline: Timeline(timeline),
                lsn: Lsn(lsn),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_postgres_history_files() {
        let text = "1\t0/5000000\tno recovery target specified\n\n2\t0/6000A28\tno recovery target specified\n";
        assert_eq!(
            parse(text),
            vec![
                TimelineSwitch {
                    timeline: Timeline(1),
                    lsn: Lsn(0x5000000)
                },
                TimelineSwitch {
                    timeline: Timeline(2),
                    lsn: Lsn(0x6000A28)
                },
            ]
        );
    }
}
