//! etcd running out of space on the test hosts: its revision, junk written until its space
//! quota is reached (the NOSPACE alarm), and what an operator does to make room again, all
//! through etcd's HTTP gateway.

use std::time::Duration;

use pgha_testkit::{http, wait_until};
use serde_json::Value;

use crate::netns::{Cluster, ETCD_PORT};

/// The junk key, base64 (`pgha-test-junk`): outside every cluster's prefix.
const JUNK_KEY: &str = "cGdoYS10ZXN0LWp1bms=";

impl Cluster {
    /// etcd's first member, `ip:port`.
    fn etcd_addr(&self) -> String {
        format!("{}:{ETCD_PORT}", self.net.host("etcd").ip)
    }

    /// `POST PATH BODY` to etcd's gateway: its JSON answer, or why there is none.
    fn etcd_call(&self, path: &str, body: &str) -> Result<Value, String> {
        match http("POST", &self.etcd_addr(), path, None, Some(body)) {
            Some((200, answer)) => serde_json::from_str(&answer).map_err(|e| e.to_string()),
            Some((code, answer)) => Err(format!("{code}: {answer}")),
            None => Err("no answer".into()),
        }
    }

    /// etcd's current revision (every write makes one).
    pub fn etcd_revision(&self) -> u64 {
        let v = self
            .etcd_call("/v3/kv/range", &format!("{{\"key\":\"{JUNK_KEY}\"}}"))
            .expect("etcd's range");
        v["header"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .expect("a revision")
    }

    /// Overwrites one junk key with 1 MiB values, each kept in etcd's history, until etcd
    /// refuses a write for lack of space (its NOSPACE alarm is raised); how many writes it took.
    pub fn fill_etcd(&self) -> usize {
        // 1,048,575 zero bytes
        let value = "A".repeat(1_398_100);
        let body = format!("{{\"key\":\"{JUNK_KEY}\",\"value\":\"{value}\"}}");
        for written in 0..10_000 {
            match self.etcd_call("/v3/kv/put", &body) {
                Ok(_) => {}
                Err(e) if e.contains("database space exceeded") => return written,
                Err(e) => panic!("etcd refused a junk write for another reason: {e}"),
            }
        }
        panic!("etcd took 10,000 junk writes without running out of space");
    }

    /// Whether etcd's NOSPACE alarm is raised.
    pub fn etcd_out_of_space(&self) -> bool {
        let v = self
            .etcd_call("/v3/maintenance/alarm", "{\"action\":\"GET\"}")
            .expect("etcd's alarms");
        v["alarms"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["alarm"] == "NOSPACE"))
    }

    /// What an operator does when etcd is out of space: deletes the junk, compacts the history
    /// up to now, defragments, and disarms the alarm; waits until etcd takes writes again.
    pub fn make_room_in_etcd(&self) {
        self.etcd_call("/v3/kv/deleterange", &format!("{{\"key\":\"{JUNK_KEY}\"}}"))
            .expect("delete the junk");
        let revision = self.etcd_revision();
        self.etcd_call(
            "/v3/kv/compaction",
            &format!("{{\"revision\":\"{revision}\",\"physical\":true}}"),
        )
        .expect("compact etcd");
        self.etcd_call("/v3/maintenance/defragment", "{}")
            .expect("defragment etcd");
        let alarms = self
            .etcd_call("/v3/maintenance/alarm", "{\"action\":\"GET\"}")
            .expect("etcd's alarms");
        for alarm in alarms["alarms"].as_array().into_iter().flatten() {
            let body = format!(
                "{{\"action\":\"DEACTIVATE\",\"memberID\":\"{}\",\"alarm\":\"NOSPACE\"}}",
                alarm["memberID"].as_str().unwrap_or("0")
            );
            self.etcd_call("/v3/maintenance/alarm", &body)
                .expect("disarm etcd's alarm");
        }
        wait_until("etcd takes writes again", Duration::from_secs(10), || {
            (!self.etcd_out_of_space()).then_some(())
        });
    }
}
