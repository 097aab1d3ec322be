//! The pgha command line: parses arguments, sets up logging, runs one command, maps errors to
//! a message and a non-zero exit code.

mod chaos_cmd;
mod cli;
mod render;
mod topology;

use std::process::ExitCode;

use clap::Parser;

use pgha_host::local::{up, url, Password};
use pgha_host::{ClusterHandle, LocalCluster};

use crate::cli::{Cli, Command, ConfigAction, TlsAction};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Supervise(flags) = cli.command {
        let args = match flags.into_args() {
            Ok(args) => args,
            Err(e) => {
                eprintln!("pgha supervise: {e}");
                return ExitCode::from(2);
            }
        };
        // No runtime, no threads: a small process that sleeps, reads one file and waits.
        let code = pgha_pg::supervisor::run(&args);
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgha: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(flags) => {
            let args = flags.into_args()?;
            let dir_arg = args.dir.clone();
            up::run(args, |cluster, primary| {
                print!("{}", render::up_summary(cluster, primary, &dir_arg))
            })
            .await
        }
        Command::Agent { config } => pgha_host::node::run::agent(&config).await,
        Command::Tls { action } => tls(action),
        Command::Proxy { config } => pgha_host::node::run::proxy(&config).await,
        Command::Config {
            action: ConfigAction::Show { at },
        } => {
            print!(
                "{}",
                render::render_config(&at.open().await?.config().await?)
            );
            Ok(())
        }
        Command::Config {
            action: ConfigAction::Set { at, assignments },
        } => {
            let changed = at.open().await?.set_config(&assignments).await?;
            print!("{}", render::render_config(&changed.config));
            if changed.deferred {
                println!("(the cluster is stopped: applied at the next `pgha up`)");
            }
            Ok(())
        }
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
                return print_as(json, &handle.status().await?, render);
            };
            let every = std::time::Duration::from_secs_f64(every.max(0.2));
            let mut stop = pgha_host::signals::StopSignals::install()?;
            loop {
                let status = handle.status().await?;
                // Clear the screen and go home, then the same output as without --watch.
                print!("\x1b[2J\x1b[H");
                print_as(json, &status, render)?;
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
                    Some(r) => println!(
                        "withdrew the {} to {}",
                        if r.kind == pgha_core::RequestKind::Switchover {
                            "switchover"
                        } else {
                            "failover"
                        },
                        r.to.map_or("the best candidate".to_string(), |t| t.to_string())
                    ),
                    None => println!("no switchover or failover was pending"),
                }
                return Ok(());
            }
            let Some(when) = when else {
                return promote(&handle, to, pgha_core::RequestKind::Switchover).await;
            };
            let at = render::parse_when(&when)?;
            let target = handle.schedule_switchover(to, at).await?;
            println!(
                "switchover to {target} scheduled for {} (`pgha switchover --cancel` withdraws it)",
                render::utc(at)
            );
            Ok(())
        }
        Command::Failover {
            at,
            to,
            force,
            allow_data_loss,
        } => {
            let kind = pgha_core::RequestKind::Failover {
                force,
                allow_data_loss,
            };
            promote(&at.open().await?, Some(to), kind).await
        }
        Command::Stop { dir, name, mode } => {
            let body = pgha_host::api::control::StopRequest {
                immediate: mode == "immediate",
            };
            stop_or_start(&dir, &name, Some(body)).await
        }
        Command::Start { dir, name } => stop_or_start(&dir, &name, None).await,
        Command::Restart {
            at,
            members,
            pending,
        } => {
            use pgha_host::rolling::{plan, RestartStep};
            let handle = at.open().await?;
            let plan = plan(&handle.status().await?, &members, pending)?;
            if plan.standbys.is_empty() && plan.primary.is_none() {
                println!("nothing to restart");
                return Ok(());
            }
            handle
                .restart(&plan, |step| match step {
                    RestartStep::Stopping(m) => println!("{m}: stopping"),
                    RestartStep::Starting(m) => println!("{m}: starting"),
                    RestartStep::Streaming(m) => println!("{m}: streaming again"),
                    RestartStep::HandingOver { from } => {
                        println!("{from}: primary, handing over by switchover")
                    }
                    RestartStep::HandedOver { from, to } => {
                        println!("{to} is the primary; {from} restarts as its standby")
                    }
                })
                .await?;
            println!("restart done");
            Ok(())
        }
        Command::Reinit { at, member, force } => {
            if !force
                && !confirm(&format!(
                "Re-clone {member} from the leader? Its PostgreSQL stops and its data directory is \
                 moved aside (kept). [y/N] "
            ))? {
                println!("nothing done");
                return Ok(());
            }
            let done = at.open().await?.reinit(&member).await?;
            match done.moved_aside {
                Some(path) => println!(
                    "{member}: old data kept in {}; cloning from the leader (see `pgha status`)",
                    path.display()
                ),
                None => println!("{member}: cloning from the leader (see `pgha status`)"),
            }
            Ok(())
        }
        Command::Pause { at } => {
            at.open().await?.pause(true).await?;
            println!("paused: no automatic action until `pgha resume`");
            Ok(())
        }
        Command::Resume { at } => {
            at.open().await?.pause(false).await?;
            println!("resumed");
            Ok(())
        }
        Command::History { at, json } => {
            let entries = at.open().await?.history().await?;
            print_as(json, &entries, |e| render::render_history(e))
        }
        Command::Url {
            dir,
            member,
            primary,
            password,
        } => {
            let cluster = LocalCluster::open(&dir)?;
            let password = if password {
                Password::Inline
            } else {
                Password::FromPassfile
            };
            let uri = url::url(&cluster, member.as_deref(), primary, password).await?;
            println!("{uri}");
            Ok(())
        }
        Command::Chaos(args) => chaos_cmd::run(args).await,
        Command::Supervise(_) => unreachable!("handled before the runtime starts"),
    }
}

/// `pgha tls ...`: makes the files and says where each one goes.
fn tls(action: TlsAction) -> anyhow::Result<()> {
    use pgha_host::tls_files::{issue, make_ca, Holder};
    let (holder, dir, name, hosts) = match action {
        TlsAction::Ca { dir } => {
            let made = make_ca(&dir)?;
            println!(
                "made the cluster CA: {} (copy to every host: [tls] ca_file) and {} (keep it here, 0600)",
                made.cert.display(),
                made.key.display()
            );
            return Ok(());
        }
        TlsAction::Member { dir, name, hosts } => (Holder::Member, dir, name, hosts),
        TlsAction::Proxy { dir, name, hosts } => (Holder::Proxy, dir, name, hosts),
    };
    let written = issue(&dir, holder, &name, &hosts)?;
    let (section, on) = match holder {
        Holder::Member => ("[tls]", format!("{name}'s host")),
        Holder::Proxy => ("[proxy.tls]", "the proxy's host".to_string()),
    };
    let mut valid_for = vec![name.clone()];
    valid_for.extend(hosts);
    println!(
        "issued {name}'s certificate for {}: {} and {} ({section} cert_file and key_file on {on})",
        valid_for.join(", "),
        written.cert.display(),
        written.key.display()
    );
    Ok(())
}

/// Requests a promotion and waits for it, saying what happens.
async fn promote(
    handle: &ClusterHandle,
    to: Option<String>,
    kind: pgha_core::RequestKind,
) -> anyhow::Result<()> {
    let what = match kind {
        pgha_core::RequestKind::Switchover => "switchover",
        pgha_core::RequestKind::Failover { .. } => "failover",
    };
    let done = handle
        .promote(to, kind, |target| println!("{what} to {target} requested"))
        .await?;
    println!(
        "{} is the primary (took {:.1} s)",
        done.target,
        done.took.as_secs_f64()
    );
    Ok(())
}

/// Stops (`Some`) or starts (`None`) one member of the local cluster in `dir`.
async fn stop_or_start(
    dir: &std::path::Path,
    name: &str,
    stop: Option<pgha_host::api::control::StopRequest>,
) -> anyhow::Result<()> {
    let cluster = LocalCluster::open(dir)?;
    cluster.member(name)?;
    let stopping = stop.is_some();
    let answer = ClusterHandle::local(cluster)
        .stop_or_start(name, stop)
        .await?;
    let text = match (stopping, answer.changed) {
        (true, true) => "stopped",
        (true, false) => "was not running",
        (false, true) => "starting",
        (false, false) => "is already running",
    };
    println!("{} {text}", answer.member);
    Ok(())
}

/// Asks `question` on the terminal; refuses (naming --force) when stdin is not one.
fn confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::{IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("not asking on a non-interactive input: add --force to go ahead");
    }
    print!("{question}");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Prints `value` as pretty JSON, or as the text `render` makes of it.
fn print_as<T: serde::Serialize + ?Sized>(
    json: bool,
    value: &T,
    render: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", render(value));
    }
    Ok(())
}
