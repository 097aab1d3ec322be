//! `pgha up`'s and `pgha supervise`'s flags, and the arguments their runners take from them.

use std::path::PathBuf;

/// `pgha supervise`'s flags, as the agent passes them.
#[derive(Debug, clap::Args)]
pub struct SuperviseFlags {
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
}

impl SuperviseFlags {
    /// The supervisor's arguments; an unknown watchdog mode is refused, naming it.
    pub fn into_args(
        self,
    ) -> Result<pgha_pg::supervisor::SuperviseArgs, pgha_pg::watchdog::WatchdogError> {
        Ok(pgha_pg::supervisor::SuperviseArgs {
            member: self.member,
            lease_file: self.lease_file,
            data_dir: self.data_dir,
            log_file: self.log_file,
            postgres: self.postgres,
            os_user: self.os_user,
            watchdog: pgha_pg::supervisor::WatchdogSetting {
                mode: self.watchdog.parse()?,
                device: self.watchdog_device,
                timeout_s: self.watchdog_timeout,
            },
        })
    }
}

/// `pgha up`'s flags.
#[derive(Debug, clap::Args)]
pub struct UpFlags {
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
    /// TLS at the entry points of a new cluster: terminate (the default: the proxy
    /// presents its own certificate from the cluster CA, so clients verify one name and
    /// cancels sent inside TLS reach their session), require (terminate, and refuse clients
    /// without TLS), passthrough (a client's TLS reaches the member it is routed to). A terminating proxy authenticates SCRAM roles itself, so clients keep
    /// their settings (channel_binding=require binds to the proxy's certificate). Kept in
    /// DIR/pgha.toml as cluster.proxy_tls.
    #[arg(long, value_parser = ["passthrough", "terminate", "require"])]
    proxy_tls: Option<String>,
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
}

impl UpFlags {
    /// What `pgha up` is asked for; the `--synchronous-*` flags become dynamic settings.
    pub fn into_args(
        self,
    ) -> Result<pgha_host::local::up::UpArgs, pgha_host::local::config::UnknownProxyTls> {
        let count = self.synchronous_count.map(|c| c.to_string());
        let settings = [
            ("synchronous_mode", self.synchronous_mode),
            ("synchronous_count", count),
            ("synchronous_method", self.synchronous_method),
            ("synchronous_commit", self.synchronous_commit),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key.to_string(), value?)))
        .collect();
        Ok(pgha_host::local::up::UpArgs {
            dir: self.dir,
            members: self.members,
            port: self.port,
            params: self.params,
            pg_bin_dir: self.pg_bin_dir,
            os_user: self.os_user,
            proxy_tls: self.proxy_tls.map(|t| t.parse()).transpose()?,
            settings,
        })
    }
}
