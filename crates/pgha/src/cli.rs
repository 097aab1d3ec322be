//! The command line as clap parses it: every command, flag and help text.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod run_flags;
mod target;

pub use run_flags::{SuperviseFlags, UpFlags};
pub use target::Where;

/// pgha runs PostgreSQL streaming replication for you: a primary and its standbys, cloned,
/// configured and watched, with one command.
#[derive(Debug, Parser)]
#[command(name = "pgha", version, about, long_about = None, after_help = "\
Start here:
  pgha up --dir demo              create a 3-member cluster in ./demo and keep it running
  pgha status --dir demo          what every member is doing (from another terminal)
  psql \"$(pgha url --dir demo)\"   connect to the primary")]
pub struct Cli {
    /// Log filter, e.g. info, debug, pgha=debug (also RUST_LOG).
    #[arg(long, global = true, default_value = "info", env = "PGHA_LOG")]
    pub log: String,

    /// Log lines as text (coloured only when stderr is a terminal) or as JSON objects, one a
    /// line (for journald, Loki, ...).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = LogFormat::Text,
        env = "PGHA_LOG_FORMAT"
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print every dynamic setting.
    Show {
        #[command(flatten)]
        at: Where,
    },
    /// Change settings live, e.g. `pgha config set --dir demo synchronous_mode=on synchronous_count=1`.
    ///
    /// `postgresql.NAME=VALUE` sets a PostgreSQL parameter on every member (over the member's
    /// own config file), applied by a reload; one that needs a restart shows as pending
    /// restart in `pgha status`. `postgresql.NAME=` removes it. Parameters pgha manages
    /// itself (port, replication, synchronous_standby_names, ...) are refused, and PostgreSQL
    /// checks the others first (`postgres -C`): a name it does not know or a value it cannot
    /// parse is refused, nothing changed. A synchronous setting returns once the leader has it
    /// in force (commits then obey it), at most twice `ttl_ms`.
    Set {
        #[command(flatten)]
        at: Where,
        /// KEY=VALUE pairs (keys as `pgha config show` prints them, or postgresql.NAME).
        #[arg(required = true, value_name = "KEY=VALUE")]
        assignments: Vec<String>,
    },
    /// Edit every dynamic setting at once in $VISUAL or $EDITOR (default vi): the file lists
    /// them as `pgha config show` does; saved and quit, the changes are validated together and
    /// stored only if every one is right (as `config set`); a wrong one is named, and you may
    /// edit again (on a terminal) or find your edit kept in the file it names.
    Edit {
        #[command(flatten)]
        at: Where,
    },
    /// Check a configuration file without running anything: a distributed host's node config
    /// or a local cluster's pgha.toml (told apart by content, or by --kind). Prints
    /// "FILE: valid" and what it configures, or the key at fault and how to fix it (exit 1).
    Validate {
        file: PathBuf,
        /// node (`pgha agent --config`) or local (`pgha.toml` of `pgha up`) [default: by content].
        #[arg(long, value_enum)]
        kind: Option<FileKind>,
    },
}

/// `pgha restart --role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RestartRole {
    Primary,
    Standby,
}

impl From<RestartRole> for pgha_host::rolling::RoleFilter {
    fn from(role: RestartRole) -> Self {
        match role {
            RestartRole::Primary => pgha_host::rolling::RoleFilter::Primary,
            RestartRole::Standby => pgha_host::rolling::RoleFilter::Standby,
        }
    }
}

/// `pgha config validate --kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FileKind {
    Node,
    Local,
}

#[derive(Debug, Subcommand)]
pub enum TlsAction {
    /// Make a new cluster CA in DIR: ca.crt (give it to every host: `[tls] ca_file`) and
    /// ca.key (0600; keep it where only you can read it).
    Ca {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issue member NAME's certificate from the CA in DIR, valid for NAME and each --host
    /// (the address the others reach it at): DIR/NAME.crt and DIR/NAME.key, for that host's
    /// `[tls] cert_file` and `key_file`.
    Member {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
        /// IP address or DNS name of the member (repeatable).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
    },
    /// Issue the certificate of a proxy that terminates clients' TLS, from the CA in DIR,
    /// valid for NAME (the name clients verify, e.g. db.example.com) and each --host:
    /// DIR/NAME.crt and DIR/NAME.key, for `[proxy.tls] cert_file` and `key_file`.
    Proxy {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
        /// IP address or DNS name clients reach the proxy at (repeatable).
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a local cluster (primary + standbys) in DIR and run it in the foreground.
    ///
    /// On an empty or new DIR: initdb of the primary (scram-sha-256, data checksums), a
    /// replication role and one slot per standby, pg_basebackup clones, standbys streaming.
    /// On a DIR `pgha up` created before: starts the same members with their data. Ctrl-C
    /// (or SIGTERM) stops every member cleanly. When run as root, PostgreSQL runs as the
    /// `postgres` OS user (see --os-user).
    Up(UpFlags),
    /// Run one member of a distributed cluster on this host (etcd as the store).
    ///
    /// FILE names the cluster, the etcd endpoints, this member (name, directory, PostgreSQL
    /// host/port, REST API address, tags) and a 0600 secrets file shared by all hosts. Agents
    /// may start in any order: one bootstraps, the others clone from it. SIGTERM stops
    /// PostgreSQL and leaves the cluster (the others fail over at once if it led). Beside the
    /// member directory it keeps `<dir>.lease` (the fencing deadline), `<dir>.failsafe` (a
    /// promise given) and `<dir>.agent` (its lock and pid: a second agent of the directory is
    /// refused).
    ///
    /// TLS: `[tls]` (ca_file, cert_file, key_file from `pgha tls ca` / `pgha tls member`)
    /// encrypts and authenticates every PostgreSQL connection pgha makes or configures (a
    /// config without it is refused unless it says `insecure_no_tls = true`);
    /// `[etcd] ca_file, cert_file, key_file` with `https://` endpoints do the same for etcd
    /// (run etcd with --cert-file, --key-file, --trusted-ca-file, --client-cert-auth). With
    /// etcd's own authentication on (`etcdctl auth enable`), `[etcd] user` names the etcd user
    /// and `etcd_password` in the secrets file its password; its role needs readwrite on the
    /// prefix /pgha/<cluster>/.
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
    /// Certificates for a distributed cluster's TLS (`pgha up` makes its own in DIR/tls).
    ///
    /// Every connection to PostgreSQL pgha makes or configures then verifies the member's
    /// certificate: replication, clones, rewinds, the agents' and the proxy's probes.
    Tls {
        #[command(subcommand)]
        action: TlsAction,
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
        /// Who streams from whom, as a tree under the leader.
        #[arg(long, conflicts_with = "json")]
        topology: bool,
        /// Refresh in place every SECONDS (default 2) until Ctrl-C.
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2")]
        watch: Option<f64>,
    },
    /// Planned switchover: the primary hands over to a caught-up standby, losing nothing.
    ///
    /// The leader stops accepting writes first; the target is promoted only once it has
    /// replayed everything; the old primary rejoins as its standby without a rewind. Refused,
    /// with the reason, when the target is not streaming or not caught up.
    Switchover {
        #[command(flatten)]
        at: Where,
        /// Member to promote. Without it, the leader hands over to the best candidate as it
        /// steps down (the one named on the request is the best at that moment), and the
        /// command waits for whichever member takes over.
        #[arg(long)]
        to: Option<String>,
        /// Schedule it instead: an instant (RFC 3339, e.g. 2026-12-01T03:00:00Z) or a delay
        /// from now (+30m, +2h). Shown in `pgha status` until it runs; a target not streaming
        /// this moment is checked again when it is due.
        #[arg(long = "at", value_name = "WHEN", conflicts_with = "cancel")]
        when: Option<String>,
        /// Withdraw a scheduled (or pending) switchover or failover.
        #[arg(long, conflicts_with = "to")]
        cancel: bool,
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
        /// Promote even where acknowledged commits may be lost (synchronous modes): a member
        /// outside the synchronous set, or one behind another member of the set.
        #[arg(long)]
        allow_data_loss: bool,
        /// The last leader is known down (its host off, its PostgreSQL stopped): withdraw its
        /// failsafe list, which keeps a target it left out from taking over.
        #[arg(long)]
        leader_down: bool,
    },
    /// Stop one member (its PostgreSQL and its agent); stopping the primary fails over.
    ///
    /// Answers once the member's agent has left: usually at once; longer if a job of it must
    /// end first (up to 30 s) or PostgreSQL is slow to stop (a line on stderr after 5 s, then
    /// every 30 s, says it still waits).
    ///
    /// With --config, the request goes to the agent that runs the member (its API as etcd
    /// publishes it); the stopped member leaves etcd, so start it again with its own host's
    /// config file (`pgha start --config /etc/pgha/node2.toml node2`).
    Stop {
        #[command(flatten)]
        at: Where,
        /// Member to stop, e.g. n1.
        name: String,
        /// fast (clean shutdown) or immediate (like a crash).
        #[arg(long, default_value = "fast", value_parser = ["fast", "immediate"])]
        mode: String,
    },
    /// Start one member again; a former primary rejoins as a standby by itself.
    ///
    /// With --config, the request goes to the agent process that runs the member: the one of
    /// FILE when FILE names that member, else the member's API as etcd publishes it (a member
    /// stopped by `pgha stop` is no longer there: use its own host's config file).
    Start {
        #[command(flatten)]
        at: Where,
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
    /// Use it as `psql "$(pgha url --dir demo)"`. The password stays out of the URI: libpq
    /// reads it from DIR/pgpass (`--password` puts it in, for drivers that need it there).
    ///
    /// Distributed mode (--config FILE): by default a multi-host URI of every member etcd
    /// lists (the leader first) with `target_session_attrs=read-write`, so libpq connects to
    /// whichever member is the primary now, with or without a proxy; `--proxy` gives the
    /// read-write listener of FILE's `[proxy] rw_listen` instead. The password comes from
    /// the member directory's pgpass (`member.dir`, written by the agent) when this user can
    /// read it, else libpq reads PGPASSFILE or ~/.pgpass; with `[tls]` libpq verifies the
    /// server's certificate (`sslmode=verify-full`, `sslrootcert` = `[tls] ca_file`).
    Url {
        #[command(flatten)]
        at: Where,
        /// Member to connect to instead of the read-write entry point, e.g. n2.
        #[arg(long, conflicts_with_all = ["primary", "proxy"])]
        member: Option<String>,
        /// The current primary itself rather than the read-write entry point (the proxy).
        #[arg(long, conflicts_with = "proxy")]
        primary: bool,
        /// The proxy's read-write listener (`pgha up`'s entry point, the default with --dir;
        /// `[proxy] rw_listen` with --config).
        #[arg(long)]
        proxy: bool,
        /// Put the password in the URI, for drivers that read no libpq password file (it then
        /// shows in the process list of what runs it). By default libpq reads it from
        /// DIR/pgpass (the URI's `passfile` parameter).
        #[arg(long)]
        password: bool,
    },
    /// Internal: the parent of one member's postmaster, started by the agent. It stops
    /// PostgreSQL fast a quarter second before the lease deadline the agent wrote into
    /// LEASE_FILE and kills it when that deadline passes, whatever happened to the agent, and
    /// PostgreSQL dies with it.
    #[command(hide = true)]
    Supervise(SuperviseFlags),
    /// Rolling restart of members' PostgreSQL: standbys first, each back and streaming before
    /// the next stops, then the primary after a switchover to a caught-up standby (no
    /// failover, nothing lost), or in place with --in-place. Never two members down at once;
    /// refused unless every member runs. Applies parameters shown as pending restart in
    /// `pgha status`.
    Restart {
        #[command(flatten)]
        at: Where,
        /// Members to restart (default: every member).
        members: Vec<String>,
        /// Only members with a pending restart (`pg_settings.pending_restart`).
        #[arg(long)]
        pending: bool,
        /// Only members of this role: primary (the leader, after a switchover) or standby
        /// (every other member, one at a time); with --pending, those of them that wait.
        #[arg(long, value_enum, conflicts_with = "members")]
        role: Option<RestartRole>,
        /// Restart the primary where it is, keeping the lease: writes stop for the few seconds
        /// of its restart (the proxy holds new sessions meanwhile), and nobody fails over.
        /// Without it the primary hands over by switchover first (writes pause for well under
        /// a second), and stays a standby.
        #[arg(long)]
        in_place: bool,
    },
    /// Have members re-read their PostgreSQL configuration now: each renders pgha.conf again
    /// and reloads (pg_ctl reload), e.g. after you edited a file PostgreSQL includes. Prints
    /// which members reloaded; exits 1 when one did not (not running, busy with a clone, ...).
    Reload {
        #[command(flatten)]
        at: Where,
        /// Members to reload (default: every member).
        members: Vec<String>,
    },
    /// Re-clone a broken standby from the leader (or from a streaming standby tagged
    /// `clonefrom`): its PostgreSQL stops, its data directory is
    /// moved aside to DIR/MEMBER/data.old-<time> (kept, never deleted; at most two are kept),
    /// and it clones again with pg_basebackup. Refused for the leader. Asks for confirmation.
    Reinit {
        #[command(flatten)]
        at: Where,
        member: String,
        /// Do not ask (for scripts).
        #[arg(long)]
        force: bool,
    },
    /// Fault campaign: inject faults one at a time while writers record every acknowledged
    /// write, then check that nothing acknowledged was lost, that one member wrote at a time,
    /// and how fast each fault was recovered from (see `pgha chaos --help`).
    Chaos(crate::chaos_cmd::ChaosArgs),
}
