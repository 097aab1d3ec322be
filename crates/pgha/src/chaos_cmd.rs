//! `pgha chaos`: its arguments, the cluster it acts on (from `--dir` or `--config`), and the
//! report on the terminal, as JSON and as an HTML page; the exit status says the verdict.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use pgha_chaos::{
    campaign, faults::FaultCommand, html, progress::Progress, table, FaultKind, Length, Verdict,
};
use pgha_core::duration_text::parse_duration;

/// Exit status when a promise was broken (lost writes in a synchronous mode, two writers,
/// no recovery within the bound).
pub const EXIT_BROKEN: i32 = 3;
/// Exit status when acknowledged writes were lost in asynchronous mode (no promise broken).
pub const EXIT_LOST: i32 = 4;

/// Arguments of `pgha chaos`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Faults (--faults, comma-separated, default all):
  kill-primary     SIGKILL of the primary's postmaster (its postmaster.pid)
  kill-standby     SIGKILL of a standby's postmaster
  stop-primary     clean stop of the primary member, started again once another takes writes
  crash-primary    the primary member stopped at once (PostgreSQL quits without a
                   checkpoint, as in a crash; its agent leaves, handing the leader key over),
                   started again once another takes writes
  switchover       planned switchover to a streaming standby
  failover         manual failover to a standby (of the synchronous set in synchronous modes)
  restart-standby  a standby member stopped and started again
  pause-agent      a member's agent stands still for --agent-pause, then goes on; PostgreSQL
                   runs on under its supervisor, which fences a leader whose agent stops
                   renewing. With --config: this host's `pgha agent` is stopped (SIGSTOP);
                   with --dir (every agent a task of `pgha up`): a member's agent loop is
                   frozen through the API (POST /members/NAME/agent/freeze)
  isolate-host     with --config, as root: this host cut off from the other members and etcd
                   (iptables DROP both ways, open connections too) for --agent-pause, then
                   reconnected; needs them on other addresses (hosts or network namespaces)
  lossy-host       with --config, as root: this host's links to the other members and etcd
                   lose 30 % of their packets each way (iptables random DROP) for twice
                   --agent-pause; TCP gets through late, the leader may keep its lease
  change-config    a live change of the dynamic settings, as `pgha config set` makes it:
                   ttl_ms raised by half or lowered by a third (2 s at least), the
                   synchronous method or commit level (on, remote_apply) flipped, the
                   synchronous count moved by one (mode on), postgresql.work_mem set; the
                   next change-config undoes it. The synchronous mode never changes
  NAME             a fault of your platform, given as --fault-command NAME=CMD (repeatable):
                   CMD runs through sh to its end (PGHA_LEADER names the leader of that
                   moment), e.g. etcd-restart='systemctl restart etcd' or
                   agent-kill='systemctl kill -s KILL pgha-agent' (systemd restarts it)
Kills need the member's data directory on this machine: with --config, only this host's
member is killed or paused (a kill of the primary is skipped while another host leads); the
other faults go through the agents' API.

What it checks: every acknowledged write is read back from the final primary (none may be
lost in a synchronous mode); two members never both acknowledge writes after a promotion
(each write records who answered, on which timeline); every fault is recovered from (the
member it hit back in service, every member streaming, a write taken) within
--recovery-bound. Per fault kind it reports the write-unavailable window, the recovery time
and the time until the member it hit serves again (median / p95 / max), and client errors.

It refuses to start unless the cluster is healthy (one writable leader, every other member
streaming from it, not paused), and leaves it as it found it: every member running, the
original leader back by a switchover, the settings it changed put back, its table
pgha_chaos_writes dropped. Ctrl-C stops
injecting, waits for the current fault's recovery, cleans up and still reports.

Exit status: 0 all promises kept; 3 a promise broken; 4 acknowledged writes lost in
asynchronous mode (where pgha promises none); 1 it could not run (e.g. an unhealthy cluster).

Examples:
  pgha chaos --dir demo --rounds 20 --seed 7
  pgha chaos --dir demo --duration 10m --faults kill-primary,switchover --report chaos.html
  pgha chaos --config /etc/pgha/node.toml --rounds 10 --json > chaos.json
  pgha chaos --config /etc/pgha/node.toml --faults isolate-host,etcd-restart \
      --fault-command etcd-restart='systemctl restart etcd' --duration 30m")]
pub struct ChaosArgs {
    #[command(flatten)]
    at: crate::cli::Where,
    /// Faults to draw from, e.g. kill-primary,switchover (or all).
    #[arg(long, default_value = "all")]
    faults: String,
    /// How many faults to inject [default: 10 unless --duration].
    #[arg(long, conflicts_with = "duration")]
    rounds: Option<u64>,
    /// Inject faults for this long, e.g. 90s, 10m, 1h.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Seed of the random choices (fault, victim, moment); printed so a run can be repeated.
    #[arg(long)]
    seed: Option<u64>,
    /// Concurrent writers.
    #[arg(long, default_value_t = 2)]
    writers: u16,
    /// Pause of each writer after each write, in milliseconds.
    #[arg(long, default_value_t = 5)]
    write_pause_ms: u64,
    /// A write not answered within this is dropped (neither acknowledged nor counted).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    write_timeout: Duration,
    /// The pause before each fault is drawn between --min-gap and --max-gap.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    min_gap: Duration,
    #[arg(long, default_value = "4s", value_parser = parse_duration)]
    max_gap: Duration,
    /// How long pause-agent stops the agent [default: twice the lease ttl].
    #[arg(long, value_parser = parse_duration)]
    agent_pause: Option<Duration>,
    /// A fault of your platform, named NAME in --faults and the report: a shell command run
    /// to its end (e.g. etcd-restart='systemctl restart etcd'). Repeatable.
    #[arg(long, value_name = "NAME=CMD")]
    fault_command: Vec<String>,
    /// How long the cluster may take to recover from one fault, from its end, before the
    /// promise counts as broken.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    recovery_bound: Duration,
    /// How long the cluster may take, once recovered, to be healthy again before the next
    /// fault (longer when faults of your own run beside the campaign's).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    settle: Duration,
    /// Print the result as JSON on stdout (the progress stays on stderr).
    #[arg(long)]
    json: bool,
    /// Also write a self-contained HTML report with a timeline to FILE.
    #[arg(long, value_name = "FILE.html")]
    report: Option<PathBuf>,
}

/// Runs the campaign and reports; exits with the verdict's status.
pub async fn run(args: ChaosArgs) -> anyhow::Result<()> {
    let commands = args
        .fault_command
        .iter()
        .map(|text| FaultCommand::parse(text))
        .collect::<Result<Vec<_>, _>>()?;
    let names: Vec<&'static str> = commands.iter().map(|c| c.name).collect();
    let faults = FaultKind::parse_list(&args.faults, &names)?;
    let mut target = pgha_chaos::discover::target(&args.at.at()?).await?;
    target.fault_commands = commands;
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let length = match (args.rounds, args.duration) {
        (Some(n), _) => Length::Rounds(n),
        (None, Some(d)) => Length::Duration(d),
        (None, None) => Length::Rounds(10),
    };
    let opts = campaign::Options {
        faults,
        length,
        seed,
        recovery_bound: args.recovery_bound,
        settle: args.settle,
        pause: (args.min_gap, args.max_gap.max(args.min_gap)),
        agent_pause: args.agent_pause,
        workload: pgha_chaos::workload::WorkloadOptions {
            writers: args.writers.max(1),
            pause: Duration::from_millis(args.write_pause_ms),
            write_timeout: args.write_timeout,
            reader: true,
        },
    };
    let (rounds, duration) = match length {
        Length::Rounds(n) => (Some(n), None),
        Length::Duration(d) => (None, Some(d)),
    };
    let progress = Progress::new(rounds, duration, false);
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    let mut stop = pgha_host::signals::StopSignals::install(pgha_host::signals::OnHangup::Stop)?;
    let signals = tokio::spawn(async move {
        stop.recv().await;
        let _ = cancel_tx.send(true);
    });
    let outcome = campaign::run(&target, &opts, cancel_rx, &progress).await;
    signals.abort();
    let outcome = outcome?;
    let summary = &outcome.summary;
    // A reader that went away is no reason to skip the report file or the exit status.
    if args.json {
        outln!("{}", serde_json::to_string_pretty(summary)?);
    } else {
        out!("{}", table::render(summary));
    }
    if let Some(file) = &args.report {
        std::fs::write(file, html::render(summary, &outcome.acks))
            .with_context(|| format!("write {}", file.display()))?;
        tracing::info!("report written to {}", file.display());
    }
    match summary.verdict {
        Verdict::Passed => Ok(()),
        Verdict::Broken => std::process::exit(EXIT_BROKEN),
        Verdict::LostWithoutPromise => std::process::exit(EXIT_LOST),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_flags_take_units_and_name_a_wrong_one() {
        use clap::Parser as _;
        let cli = crate::cli::Cli::try_parse_from([
            "pgha",
            "chaos",
            "--dir",
            "/x",
            "--duration",
            "10m",
            "--max-gap",
            "1500ms",
        ])
        .unwrap();
        let crate::cli::Command::Chaos(args) = cli.command else {
            panic!("not chaos");
        };
        assert_eq!(args.duration, Some(Duration::from_secs(600)));
        assert_eq!(args.max_gap, Duration::from_millis(1500));
        assert_eq!(args.recovery_bound, Duration::from_secs(60));
        assert_eq!(args.settle, Duration::from_secs(10));
        let err =
            crate::cli::Cli::try_parse_from(["pgha", "chaos", "--dir", "/x", "--duration", "3d"])
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("--duration") && err.contains("unknown unit \"d\""),
            "{err}"
        );
    }
}
