//! The pgha command line: parses arguments, sets up logging, runs one command, maps errors to
//! a message and a non-zero exit code.

mod agent_cmd;
mod cluster;
mod config;
mod error;
mod handle;
mod lock;
mod node;
mod render;
mod secrets;
mod stop_signals;
mod trust;
mod up;
mod url;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::cluster::LocalCluster;
use crate::handle::ClusterHandle;

/// pgha runs PostgreSQL streaming replication for you: a primary and its standbys, cloned,
/// configured and watched, with one command.
#[derive(Debug, Parser)]
#[command(name = "pgha", version, about, long_about = None, after_help = "\
Start here:
  pgha up --dir demo              create a 3-member cluster in ./demo and keep it running
  pgha status --dir demo          what every member is doing (from another terminal)
  psql \"$(pgha url --dir demo)\"   connect to the primary")]
struct Cli {
    /// Log filter, e.g. info, debug, pgha=debug (also RUST_LOG).
    #[arg(long, global = true, default_value = "info", env = "PGHA_LOG")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

/// Which cluster a command acts on: a local one (`pgha up`'s directory) or a distributed one
/// (this host's agent config file, which names etcd and the secrets).
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
struct Where {
    /// Local cluster directory (created by `pgha up`).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Distributed mode: the agent config file (etcd endpoints, member, secrets).
    #[arg(long)]
    config: Option<PathBuf>,
}

impl Where {
    async fn open(&self) -> anyhow::Result<ClusterHandle> {
        match (&self.dir, &self.config) {
            (Some(dir), _) => Ok(ClusterHandle::local(LocalCluster::open(dir)?)),
            (None, Some(file)) => ClusterHandle::distributed(file).await,
            (None, None) => {
                anyhow::bail!("give --dir DIR (local cluster) or --config FILE (distributed)")
            }
        }
    }
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Print every dynamic setting.
    Show {
        #[command(flatten)]
        at: Where,
    },
    /// Change settings live, e.g. `pgha config set --dir demo synchronous_mode=on synchronous_count=1`.
    Set {
        #[command(flatten)]
        at: Where,
        /// KEY=VALUE pairs (keys as `pgha config show` prints them).
        #[arg(required = true, value_name = "KEY=VALUE")]
        assignments: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a local cluster (primary + standbys) in DIR and run it in the foreground.
    ///
    /// On an empty or new DIR: initdb of the primary (scram-sha-256, data checksums), a
    /// replication role and one slot per standby, pg_basebackup clones, standbys streaming.
    /// On a DIR `pgha up` created before: starts the same members with their data. Ctrl-C
    /// (or SIGTERM) stops every member cleanly. When run as root, PostgreSQL runs as the
    /// `postgres` OS user (see --os-user).
    Up {
        /// Cluster directory (created if missing; an existing one must be empty or a pgha cluster).
        #[arg(long)]
        dir: PathBuf,
        /// Number of members for a new cluster: one primary, the rest standbys [default: 3].
        #[arg(long)]
        members: Option<u16>,
        /// Base port for a new cluster: the read-write entry point; member k listens on
        /// base + 10 + k [default: 15432].
        #[arg(long)]
        port: Option<u16>,
        /// PostgreSQL parameter for every member of a new cluster, e.g. --param shared_buffers=256MB
        /// (repeatable; later edits go in DIR/pgha.toml).
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Directory of the PostgreSQL server programs (default: found on PATH, via pg_config,
        /// or the newest /usr/lib/postgresql/<version>/bin).
        #[arg(long, env = "PGHA_PG_BIN_DIR")]
        pg_bin_dir: Option<PathBuf>,
        /// OS user that runs PostgreSQL when pgha runs as root [default: postgres].
        #[arg(long)]
        os_user: Option<String>,
        /// Synchronous replication for a new cluster: off (asynchronous), on (synchronous
        /// while a standby is healthy, else degrade and continue), strict (commits wait).
        /// Change it later with `pgha config set synchronous_mode=...`.
        #[arg(long, value_parser = ["off", "on", "strict"])]
        synchronous_mode: Option<String>,
        /// How many standbys acknowledge each commit in a synchronous mode [default: 1].
        #[arg(long)]
        synchronous_count: Option<u32>,
        /// priority (`FIRST n (...)`: sync + potential standbys) or quorum (`ANY n (...)`).
        #[arg(long, value_parser = ["priority", "quorum"])]
        synchronous_method: Option<String>,
        /// synchronous_commit level: on, remote_write or remote_apply (or local, off).
        #[arg(long, value_parser = ["off", "local", "remote_write", "on", "remote_apply"])]
        synchronous_commit: Option<String>,
    },
    /// Run one member of a distributed cluster on this host (etcd as the store).
    ///
    /// FILE names the cluster, the etcd endpoints, this member (name, directory, PostgreSQL
    /// host/port, REST API address, tags) and a 0600 secrets file shared by all hosts. Agents
    /// may start in any order: one bootstraps, the others clone from it. SIGTERM stops
    /// PostgreSQL and leaves the cluster (the others fail over at once if it led).
    Agent {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the proxy alone (distributed mode): read-write and read-only listeners from FILE's
    /// [proxy] section, following the leader in etcd.
    Proxy {
        #[arg(long)]
        config: PathBuf,
    },
    /// Show or change the cluster's dynamic settings (kept in the store; applied live).
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Show every member's role, state, timeline, WAL positions, lag and sync state.
    Status {
        #[command(flatten)]
        at: Where,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Planned switchover: the primary hands over to a caught-up standby, losing nothing.
    ///
    /// The leader stops accepting writes first; the target is promoted only once it has
    /// replayed everything; the old primary rejoins as its standby without a rewind. Refused,
    /// with the reason, when the target is not streaming or not caught up.
    Switchover {
        #[command(flatten)]
        at: Where,
        /// Member to promote (default: the best candidate).
        #[arg(long)]
        to: Option<String>,
    },
    /// Manual failover: promote a standby now, even when the primary is unhealthy.
    Failover {
        #[command(flatten)]
        at: Where,
        /// Member to promote.
        #[arg(long)]
        to: String,
        /// Promote even if the target lags behind the primary.
        #[arg(long)]
        force: bool,
        /// Promote a member outside the synchronous set (acknowledged commits may be lost).
        #[arg(long)]
        allow_data_loss: bool,
    },
    /// Stop one member (its PostgreSQL and its agent); stopping the primary fails over.
    Stop {
        #[arg(long)]
        dir: PathBuf,
        /// Member to stop, e.g. n1.
        name: String,
        /// fast (clean shutdown) or immediate (like a crash).
        #[arg(long, default_value = "fast", value_parser = ["fast", "immediate"])]
        mode: String,
    },
    /// Start one member again; a former primary rejoins as a standby by itself.
    Start {
        #[arg(long)]
        dir: PathBuf,
        name: String,
    },
    /// Maintenance mode: no automatic failover or restart until `pgha resume`.
    Pause {
        #[command(flatten)]
        at: Where,
    },
    /// Leave maintenance mode.
    Resume {
        #[command(flatten)]
        at: Where,
    },
    /// Every failover, switchover and rejoin: when, from, to, timeline, LSN, why.
    History {
        #[command(flatten)]
        at: Where,
        #[arg(long)]
        json: bool,
    },
    /// Print a libpq connection URI for the superuser: the read-write entry point (pgha's
    /// proxy, which follows the primary through failovers), the primary, or one member.
    ///
    /// Use it as `psql "$(pgha url --dir demo)"`. The password comes from DIR/secrets.toml.
    Url {
        #[arg(long)]
        dir: PathBuf,
        /// Member to connect to instead of the read-write entry point, e.g. n2.
        #[arg(long, conflicts_with = "primary")]
        member: Option<String>,
        /// The current primary itself rather than the read-write entry point (the proxy).
        #[arg(long)]
        primary: bool,
    },
    /// Internal: the parent of one member's postmaster, started by the agent. It kills
    /// PostgreSQL when the lease deadline the agent wrote into LEASE_FILE passes, whatever
    /// happened to the agent, and PostgreSQL dies with it.
    #[command(hide = true)]
    Supervise {
        #[arg(long)]
        member: String,
        #[arg(long)]
        lease_file: PathBuf,
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        log_file: PathBuf,
        #[arg(long)]
        postgres: PathBuf,
        #[arg(long)]
        os_user: Option<String>,
        #[arg(long, default_value = "off")]
        watchdog: String,
        #[arg(long, default_value = "/dev/watchdog")]
        watchdog_device: PathBuf,
        #[arg(long, default_value_t = 1)]
        watchdog_timeout: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Supervise {
        member,
        lease_file,
        data_dir,
        log_file,
        postgres,
        os_user,
        watchdog,
        watchdog_device,
        watchdog_timeout,
    } = cli.command
    {
        let mode = match watchdog.parse() {
            Ok(mode) => mode,
            Err(e) => {
                eprintln!("pgha supervise: {e}");
                return ExitCode::from(2);
            }
        };
        // No runtime, no threads: a small process that sleeps, reads one file and waits.
        let code = pgha_pg::supervisor::run(&pgha_pg::supervisor::SuperviseArgs {
            member,
            lease_file,
            data_dir,
            log_file,
            postgres,
            os_user,
            watchdog: pgha_pg::supervisor::WatchdogSetting {
                mode,
                device: watchdog_device,
                timeout_s: watchdog_timeout,
            },
        });
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
        Command::Up {
            dir,
            members,
            port,
            params,
            pg_bin_dir,
            os_user,
            synchronous_mode,
            synchronous_count,
            synchronous_method,
            synchronous_commit,
        } => {
            let mut settings = Vec::new();
            for (key, value) in [
                ("synchronous_mode", synchronous_mode),
                (
                    "synchronous_count",
                    synchronous_count.map(|c| c.to_string()),
                ),
                ("synchronous_method", synchronous_method),
                ("synchronous_commit", synchronous_commit),
            ] {
                if let Some(value) = value {
                    settings.push((key.to_string(), value));
                }
            }
            up::run(up::UpArgs {
                dir,
                members,
                port,
                params,
                pg_bin_dir,
                os_user,
                settings,
            })
            .await
        }
        Command::Agent { config } => agent_cmd::run(&config).await,
        Command::Proxy { config } => agent_cmd::proxy(&config).await,
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
        Command::Status { at, json } => {
            let status = at.open().await?.status().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", render::render_table(&status));
            }
            Ok(())
        }
        Command::Switchover { at, to } => {
            at.open()
                .await?
                .promote(to, pgha_core::RequestKind::Switchover)
                .await
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
            at.open().await?.promote(Some(to), kind).await
        }
        Command::Stop { dir, name, mode } => {
            let cluster = LocalCluster::open(&dir)?;
            cluster.member(&name)?;
            let body = pgha_host::api::control::StopRequest {
                immediate: mode == "immediate",
            };
            let handle = ClusterHandle::local(cluster);
            handle.stop_or_start(&name, Some(body)).await
        }
        Command::Start { dir, name } => {
            let cluster = LocalCluster::open(&dir)?;
            cluster.member(&name)?;
            ClusterHandle::local(cluster)
                .stop_or_start(&name, None)
                .await
        }
        Command::Pause { at } => at.open().await?.pause(true).await,
        Command::Resume { at } => at.open().await?.pause(false).await,
        Command::History { at, json } => {
            let entries = at.open().await?.history().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                print!("{}", render::render_history(&entries));
            }
            Ok(())
        }
        Command::Url {
            dir,
            member,
            primary,
        } => {
            let cluster = LocalCluster::open(&dir)?;
            println!("{}", url::url(&cluster, member.as_deref(), primary).await?);
            Ok(())
        }
        Command::Supervise { .. } => unreachable!("handled before the runtime starts"),
    }
}
