//! Reasons read as log lines.

use super::*;

#[test]
fn reasons_read_as_log_lines() {
    let line = Reason::Behind { best: name("n2") }.to_string();
    assert_eq!(line, "no leader; n2 is the better candidate");
    let line = Reason::StoreDownLeaseTrusted { remaining_ms: 1200 }.to_string();
    assert!(line.contains("1200 ms"));
}
