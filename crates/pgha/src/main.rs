//! The pgha command line: parses arguments, sets up logging, runs one command, maps errors to
//! a message and a non-zero exit code.

/// `print!` that never panics: writes to the locked stdout, and a reader that went away
/// (EPIPE) is no reason to skip what a command still has to do. [`write_out`] says whether
/// the text was written.
macro_rules! out {
    ($($arg:tt)*) => {{
        $crate::write_out(format_args!($($arg)*));
    }};
}

/// `println!` that never panics (see [`out!`]).
macro_rules! outln {
    ($($arg:tt)*) => {{
        $crate::write_out(format_args!("{}\n", format_args!($($arg)*)));
    }};
}

mod chaos_cmd;
mod cli;
mod config_cmd;
mod logging;
mod promote_cmd;
mod render;
mod tls_cmd;
mod topology;
mod waiting;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use pgha_host::local::{up, url, Password};

use crate::cli::{Cli, Command, LogFormat};

fn main() -> ExitCode {
    // Writes to a closed pipe fail with EPIPE (handled where written) instead of killing a
    // long-running command before it stopped its members.
    pgha_host::signals::ignore_sigpipe();
    let cli = Cli::parse();
    if let Command::Supervise(flags) = cli.command {
        let args = match flags.into_args() {
            Ok(args) => args,
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "pgha supervise: {e}");
                return ExitCode::from(2);
            }
        };
        // No runtime: a small process that sleeps, reads one file and waits (one thread writes
        // its lines, so that a reader that stops reading never holds it up).
        let code = pgha_pg::supervisor::run(&args);
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    // As a container's pid 1: a child runs the command, this process reaps orphans.
    pgha_host::init::become_init_if_pid_1();
    let log_format = cli.log_format;
    logging::init(&cli.log, log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match log_format {
                // One JSON object a line, the error too, for whatever collects the lines.
                LogFormat::Json => tracing::error!("{e:#}"),
                LogFormat::Text => {
                    let _ = writeln!(std::io::stderr(), "pgha: error: {e:#}");
                }
            }
            ExitCode::FAILURE
        }
    }
}

/// Writes `text` to stdout and flushes; `false` when stdout is gone (a closed pipe) or failed.
/// Never panics, unlike `print!`.
fn write_out(text: std::fmt::Arguments<'_>) -> bool {
    let mut stdout = std::io::stdout().lock();
    stdout.write_fmt(text).and_then(|()| stdout.flush()).is_ok()
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(flags) => {
            let args = flags.into_args()?;
            let dir_arg = args.dir.clone();
            up::run(args, |cluster, primary| {
                let summary = render::up_summary(cluster, primary, &dir_arg);
                if !write_out(format_args!("{summary}")) {
                    tracing::warn!("could not print the summary: stdout is closed");
                }
            })
            .await
        }
        Command::Agent { config } => pgha_host::node::run::agent(&config).await,
        Command::Tls { action } => tls_cmd::run(action),
        Command::Proxy { config } => pgha_host::node::run::proxy(&config).await,
        Command::Config { action } => config_cmd::run(action).await,
        Command::Status {
            at,
            json,
            topology,
            watch,
        } => {
            let handle = at.open().await?;
            let render = if topology {
                topology::render_topology
            } else {
                render::render_table
            };
            let Some(every) = watch else {
                print_as(json, &handle.status().await?, render)?;
                return Ok(());
            };
            let every = std::time::Duration::from_secs_f64(every.max(0.2));
            let mut stop =
                pgha_host::signals::StopSignals::install(pgha_host::signals::OnHangup::Stop)?;
            loop {
                let status = handle.status().await?;
                // Clear the screen and go home, then the same output as without --watch;
                // nobody reads any more (a closed pipe): done.
                if !write_out(format_args!("\x1b[2J\x1b[H")) || !print_as(json, &status, render)? {
                    return Ok(());
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.recv() => return Ok(()),
                }
            }
        }
        Command::Switchover {
            at,
            to,
            when,
            cancel,
        } => {
            let handle = at.open().await?;
            if cancel {
                match handle.cancel_switchover().await? {
                    Some(r) => outln!(
                        "withdrew the {} to {}",
                        if r.kind == pgha_core::RequestKind::Switchover {
                            "switchover"
                        } else {
                            "failover"
                        },
                        r.to.map_or("the best candidate".to_string(), |t| t.to_string())
                    ),
                    None => outln!("no switchover or failover was pending"),
                }
                return Ok(());
            }
            let Some(when) = when else {
                return promote_cmd::run(&handle, to, pgha_core::RequestKind::Switchover, false)
                    .await;
            };
            let at = render::parse_when(&when)?;
            let scheduled = handle.schedule_switchover(to, at).await?;
            outln!(
                "switchover to {} scheduled for {} (`pgha switchover --cancel` withdraws it)",
                scheduled.target,
                render::utc(at)
            );
            if let Some(why) = scheduled.checked_when_due {
                outln!(
                    "note: refused if asked now ({why}); the leader checks it again when it is \
                     due, and a refusal then is in `pgha history`"
                );
            }
            Ok(())
        }
        Command::Failover {
            at,
            to,
            force,
            allow_data_loss,
            leader_down,
        } => {
            let kind = pgha_core::RequestKind::Failover {
                force,
                allow_data_loss,
            };
            promote_cmd::run(&at.open().await?, Some(to), kind, leader_down).await
        }
        Command::Stop { at, name, mode } => {
            let body = pgha_host::api::control::StopRequest {
                immediate: mode == "immediate",
            };
            stop_or_start(&at, &name, Some(body)).await
        }
        Command::Start { at, name } => stop_or_start(&at, &name, None).await,
        Command::Restart {
            at,
            members,
            pending,
            role,
            in_place,
        } => {
            use pgha_host::rolling::{plan, RestartStep};
            let handle = at.open().await?;
            let role = role.map(Into::into);
            let mut plan = plan(&handle.status().await?, &members, pending, role)?;
            plan.primary_in_place = in_place;
            if plan.standbys.is_empty() && plan.primary.is_none() {
                outln!("nothing to restart");
                return Ok(());
            }
            handle
                .restart(&plan, |step| match step {
                    RestartStep::Stopping(m) => outln!("{m}: stopping"),
                    RestartStep::Starting(m) => outln!("{m}: starting"),
                    RestartStep::Streaming(m) => outln!("{m}: streaming again"),
                    RestartStep::HandingOver { from } => {
                        outln!("{from}: primary, handing over by switchover")
                    }
                    RestartStep::HandedOver { from, to } => {
                        outln!("{to} is the primary; {from} restarts as its standby")
                    }
                    RestartStep::InPlace(m) => {
                        outln!("{m}: primary, restarting in place (it keeps the lease)")
                    }
                    RestartStep::Running(m) => outln!("{m}: running again as the primary"),
                })
                .await?;
            outln!("restart done");
            Ok(())
        }
        Command::Reload { at, members } => {
            let handle = at.open().await?;
            let names = if members.is_empty() {
                let status = handle.status().await?;
                status.members.into_iter().map(|m| m.name).collect()
            } else {
                members
            };
            let mut failed = Vec::new();
            for name in &names {
                let reload = handle.reload(name);
                match waiting::said_while_waiting(reload, |waited| {
                    format!("{name}: still reloading after {waited} s")
                })
                .await
                {
                    Ok(_) => outln!("{name}: reloaded"),
                    Err(e) => {
                        outln!("{name}: not reloaded: {e:#}");
                        failed.push(name.as_str());
                    }
                }
            }
            if !failed.is_empty() {
                anyhow::bail!("{} did not reload (see above)", failed.join(", "));
            }
            Ok(())
        }
        Command::Reinit { at, member, force } => {
            if !force
                && !confirm(&format!(
                "Re-clone {member} from the leader? Its PostgreSQL stops and its data directory is \
                 moved aside (kept). [y/N] "
            ))? {
                outln!("nothing done");
                return Ok(());
            }
            let done = at.open().await?.reinit(&member).await?;
            match done.moved_aside {
                Some(path) => outln!(
                    "{member}: old data kept in {}; cloning from the leader (see `pgha status`)",
                    path.display()
                ),
                None => outln!("{member}: cloning from the leader (see `pgha status`)"),
            }
            Ok(())
        }
        Command::Pause { at } => {
            at.open().await?.pause(true).await?;
            outln!("paused: no automatic action until `pgha resume`");
            Ok(())
        }
        Command::Resume { at } => {
            at.open().await?.pause(false).await?;
            outln!("resumed");
            Ok(())
        }
        Command::History { at, json } => {
            let entries = at.open().await?.history().await?;
            print_as(json, &entries, |e| render::render_history(e))?;
            Ok(())
        }
        Command::Url {
            at,
            member,
            primary,
            proxy,
            password,
        } => {
            let password = if password {
                Password::Inline
            } else {
                Password::FromPassfile
            };
            let target = match (&member, primary, proxy) {
                (Some(m), _, _) => url::Target::Member(m),
                (None, true, _) => url::Target::Primary,
                (None, false, true) => url::Target::Proxy,
                (None, false, false) => url::Target::AnyPrimary,
            };
            let uri = url::url(&at.at()?, target, password).await?;
            outln!("{uri}");
            Ok(())
        }
        Command::Chaos(args) => chaos_cmd::run(args).await,
        Command::Supervise(_) => unreachable!("handled before the runtime starts"),
    }
}

/// Stops (`Some`) or starts (`None`) one member, through the host that runs it.
async fn stop_or_start(
    at: &cli::Where,
    name: &str,
    stop: Option<pgha_host::api::control::StopRequest>,
) -> anyhow::Result<()> {
    let stopping = stop.is_some();
    let handle = at.open().await?;
    let request = handle.stop_or_start(name, stop);
    let answer = if stopping {
        waiting::said_while_waiting(request, |waited| {
            format!(
                "{name}: still stopping after {waited} s (the answer comes once its agent has \
                 left: a job it cancelled ended, PostgreSQL stopped, the leader key released)"
            )
        })
        .await?
    } else {
        request.await?
    };
    let text = match (stopping, answer.changed) {
        (true, true) => "stopped",
        (true, false) => "was not running",
        (false, true) => "starting",
        (false, false) => "is already running",
    };
    outln!("{} {text}", answer.member);
    Ok(())
}

/// Asks `question` on the terminal; refuses (naming --force) when stdin is not one.
fn confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::{IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("not asking on a non-interactive input: add --force to go ahead");
    }
    out!("{question}");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Prints `value` as pretty JSON, or as the text `render` makes of it; whether stdout took it.
fn print_as<T: serde::Serialize + ?Sized>(
    json: bool,
    value: &T,
    render: impl FnOnce(&T) -> String,
) -> anyhow::Result<bool> {
    Ok(if json {
        let text = serde_json::to_string_pretty(value)?;
        write_out(format_args!("{text}\n"))
    } else {
        write_out(format_args!("{}", render(value)))
    })
}
