//! The watchdog across a live change of the safety margin and an agent restart: the fencing
//! deadline leaves the timeout of the supervisor that runs PostgreSQL, whichever agent chose it.

use super::*;

/// The armed fencing deadline of `agent`'s member, in ms from now on the boot clock.
fn deadline_from_now(agent: &Agent) -> Option<u64> {
    let file = agent.dir.with_file_name(format!("{}.lease", agent.name));
    let text = std::fs::read_to_string(file).ok()?;
    let at: u64 = text.trim().parse().ok()?;
    Some(at.saturating_sub(pgha_pg::lease_file::boot_clock_ms()))
}

/// Found by review: the supervisor stops feeding the watchdog at the fencing deadline, and the
/// host is reset up to the watchdog's timeout later should the supervisor itself stall there;
/// the deadline leaves that timeout before the store may expire the lease. The timeout is
/// chosen from the safety margin when a supervisor starts (here 4 s: 2 s). After the margin was
/// lowered live to 2 s and the agent restarted, PostgreSQL's supervisor still ran with 2 s,
/// but the new agent went by its own 1 s: deadlines 11 s after each renewal (ttl 12 s), so a
/// stalled supervisor's host could still write 1 s after the lease expired. Now 10.25 s (the
/// deadline leaves the supervisor's 2 s, never sooner than 0.25 s after the trust ends), and
/// the agent says the running supervisor's timeout no longer fits.
#[test]
fn a_restarted_agent_leaves_room_for_the_running_supervisors_watchdog() {
    let _serial = serial();
    let mut c = DistCluster::prepare(&Options {
        members: 1,
        ..Options::default()
    });
    let device = c.root.join("no-watchdog-here");
    {
        let a = &c.agents[0];
        let text = std::fs::read_to_string(&a.config)
            .unwrap()
            .replace("ttl_ms = 3000", "ttl_ms = 12000")
            .replace("safety_margin_ms = 1000", "safety_margin_ms = 4000");
        let text = format!(
            "{text}[watchdog]\nmode = \"automatic\"\ndevice = \"{}\"\n",
            device.display()
        );
        std::fs::write(&a.config, text).unwrap();
    }
    c.launch();
    c.wait_converged(Duration::from_secs(60));
    let supervisor_line = pgha_testkit::cmdline(
        pgha_testkit::parent_of(c.agents[0].postmaster_pid().expect("a postmaster"))
            .expect("its supervisor"),
    );
    assert!(
        supervisor_line.contains("--watchdog-timeout 2"),
        "{supervisor_line}"
    );

    c.cli_ok(&["config", "set", "safety_margin_ms=2000"]);
    let agent = &mut c.agents[0];
    wait_until("the margin taken", Duration::from_secs(20), || {
        agent
            .log()
            .contains("no longer fits half the safety margin")
            .then_some(())
    });
    agent.kill();
    agent.start();
    c.wait_converged(Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(1));
    // Renewals every 0.5 s: the largest deadline seen is one just after a renewal.
    let agent = &c.agents[0];
    let mut largest = 0;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        largest = largest.max(deadline_from_now(agent).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        (9_000..=10_350).contains(&largest),
        "the deadline came up to {largest} ms after a renewal (ttl 12 s, margin 2 s, the \
         supervisor's watchdog 2 s: at most 10.25 s)\n{}",
        agent.log()
    );
    assert!(
        agent
            .log()
            .contains("2000 ms, PostgreSQL's running supervisor's"),
        "the restarted agent names the supervisor's timeout:\n{}",
        agent.log()
    );
}
