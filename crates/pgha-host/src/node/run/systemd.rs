//! Telling systemd what a member's agent does: READY, STATUS, and WATCHDOG only while it steps.

use std::time::{Duration, Instant};

use pgha_agent::AgentReport;
use pgha_core::MemberName;

use crate::node::notify::Notifier;
use crate::signals::StopSignals;

/// Until SIGINT/SIGTERM (returned, as `StopSignals::recv` says it): keeps systemd told what
/// the member's agent does (see [`SystemdFeed`]).
pub(super) async fn serve_systemd(
    notify: &Notifier,
    host: &crate::Host,
    name: &MemberName,
    stop: &mut StopSignals,
) -> &'static str {
    if !notify.enabled() {
        return stop.recv().await;
    }
    let mut feed = SystemdFeed::default();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            why = stop.recv() => return why,
            _ = tick.tick() => {}
        }
        if let Some(report) = host.report(name) {
            feed.on_report(notify, name, &report);
        }
    }
}

/// What systemd is told from the agent's reports: `READY=1` once its loop has taken a first
/// step (the API listens already), `STATUS=` the member's role and last decision, and
/// `WATCHDOG=1` every half watchdog period only while the loop's last step is fresh
/// (`Observed::fresh`: within three loop intervals). A wedged or dead loop stops the pings,
/// and systemd kills the agent and starts it again (PostgreSQL runs on under its supervisor,
/// which fences a leader on its own; the new agent adopts it).
#[derive(Debug, Default)]
struct SystemdFeed {
    ready: bool,
    status: String,
    pinged: Option<Instant>,
    /// A ping was withheld for a stale step (said once until the next ping).
    withheld: bool,
}

impl SystemdFeed {
    fn on_report(&mut self, notify: &Notifier, name: &MemberName, report: &AgentReport) {
        let Some(observed) = &report.observed else {
            return; // the loop has not finished its first step yet
        };
        let line = status_line(name, report);
        if !self.ready {
            notify.ready(&line);
            tracing::info!("{name}: told systemd the agent is ready");
            self.ready = true;
        } else if line != self.status {
            notify.status(&line);
        }
        self.status = line;
        let Some(every) = notify.watchdog_interval() else {
            return;
        };
        if self.pinged.is_some_and(|at| at.elapsed() < every) {
            return;
        }
        if observed.fresh() {
            notify.watchdog();
            self.pinged = Some(Instant::now());
            self.withheld = false;
        } else if !self.withheld {
            self.withheld = true;
            tracing::warn!(
                "{name}: the agent loop's last step is {} ms old: not feeding systemd's watchdog",
                observed.at.elapsed().as_millis()
            );
        }
    }
}

/// What systemctl status shows: the member's role as its agent last saw it, and the agent's
/// last decision.
fn status_line(name: &MemberName, report: &AgentReport) -> String {
    let Some(o) = &report.observed else {
        return format!("{name}: starting");
    };
    let local = &o.local;
    let role = if o.leads(name) {
        "primary, holds the leader lease".to_string()
    } else if local.unresponsive {
        "PostgreSQL does not answer".to_string()
    } else if !local.running {
        "PostgreSQL not running".to_string()
    } else if !local.in_recovery {
        "primary without the leader lease".to_string()
    } else if local.streaming {
        match &local.upstream {
            Some(up) => format!("standby streaming from {up}"),
            None => "standby streaming".to_string(),
        }
    } else {
        "standby, not streaming".to_string()
    };
    let mut line = format!("{name}: {role}");
    if let Some(job) = &report.job {
        line.push_str(&format!("; running {job:?}"));
    }
    if let Some(reason) = &report.reason {
        line.push_str(&format!("; {reason}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;

    use pgha_agent::Observed;

    use super::*;

    fn report(at: tokio::time::Instant) -> AgentReport {
        AgentReport {
            member: "n1".into(),
            observed: Some(Observed {
                at,
                stale_after: Duration::from_secs(3),
                local: pgha_core::LocalPg {
                    running: true,
                    in_recovery: true,
                    streaming: true,
                    upstream: Some(MemberName::new("n2")),
                    ..Default::default()
                },
                leader: Some(MemberName::new("n2")),
                leader_lsn: None,
                initialized: true,
                lease_until: None,
                synchronous: false,
                store_reachable: true,
            }),
            ..Default::default()
        }
    }

    fn received(socket: &UnixDatagram) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        while let Ok(n) = socket.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    /// READY=1 after the first step, WATCHDOG=1 while steps are fresh, none once the loop's
    /// last step is stale (a wedged loop), and again when it steps.
    #[test]
    fn feeds_the_watchdog_only_while_the_loop_steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_nonblocking(true).unwrap();
        // A watchdog of 0.2 ms: a ping is due at every report a millisecond apart.
        let notify = Notifier::new(Some(path.into()), Some("200".into()), None, 1);
        let name = MemberName::new("n1");
        let mut feed = SystemdFeed::default();
        let next = || std::thread::sleep(Duration::from_millis(1));

        feed.on_report(&notify, &name, &AgentReport::default());
        assert!(received(&socket).is_empty(), "nothing before a first step");

        feed.on_report(&notify, &name, &report(tokio::time::Instant::now()));
        assert_eq!(
            received(&socket),
            [
                "READY=1\nSTATUS=n1: standby streaming from n2",
                "WATCHDOG=1"
            ]
        );

        let wedged = tokio::time::Instant::now() - Duration::from_secs(4);
        next();
        feed.on_report(&notify, &name, &report(wedged));
        next();
        feed.on_report(&notify, &name, &report(wedged));
        assert!(
            received(&socket).is_empty(),
            "no ping for a step 4 s old (stale after 3 s)"
        );

        next();
        feed.on_report(&notify, &name, &report(tokio::time::Instant::now()));
        assert_eq!(received(&socket), ["WATCHDOG=1"]);
    }
}
