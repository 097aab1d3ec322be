//! Unit tests of `conf.rs`: what pgha.conf, primary_conninfo and pg_hba.conf say.

use super::*;

fn conf(upstream: Option<Upstream>) -> MemberConf {
    MemberConf {
        standby: upstream.is_some(),
        name: "n2".into(),
        listen_host: "127.0.0.1".into(),
        port: 5433,
        major: 15,
        upstream,
        replication_user: "replicator".into(),
        passfile: "/data/it's/pgpass".into(),
        cluster_size: 3,
        synchronous_standby_names: String::new(),
        synchronous_commit: String::new(),
        parameters: [("shared_buffers".to_string(), "16MB".to_string())].into(),
        replication_timeout: None,
        tls: None,
        primary_settings: HotStandbySettings::default(),
    }
}

/// The replication timeouts pgha renders, in both roles; a value of the user's comes after
/// them in the file, so PostgreSQL applies the user's.
#[test]
fn replication_timeouts_are_rendered_and_the_users_own_win() {
    let standby = Some(Upstream {
        name: "n1".into(),
        host: "10.0.0.1".into(),
        port: 5432,
    });
    for upstream in [None, standby] {
        let mut c = conf(upstream);
        assert!(
            !c.render().contains("wal_sender_timeout"),
            "none: PostgreSQL's"
        );
        c.replication_timeout = Some(std::time::Duration::from_secs(10));
        let text = c.render();
        assert!(text.contains("wal_sender_timeout = '10000ms'"), "{text}");
        assert!(text.contains("wal_receiver_timeout = '10000ms'"), "{text}");
        c.parameters
            .insert("wal_sender_timeout".into(), "90s".into());
        let text = c.render();
        let mut set = text.lines().filter(|l| l.starts_with("wal_sender_timeout"));
        assert_eq!(
            set.next_back(),
            Some("wal_sender_timeout = '90s'"),
            "{text}"
        );
    }
}

#[test]
fn primary_has_no_conninfo() {
    let text = conf(None).render();
    assert!(text.contains("wal_level = 'replica'"));
    assert!(text.contains("port = '5433'"));
    assert!(text.contains("shared_buffers = '16MB'"));
    assert!(!text.contains("primary_conninfo"));
}

/// A promotion rewrites the file as a primary's: every parameter that needs a restart to
/// change must read the same in both roles, or the new primary shows it as pending restart.
#[test]
fn restart_only_parameters_read_the_same_in_both_roles() {
    let primary = conf(None).render();
    let standby = conf(Some(Upstream {
        name: "n1".into(),
        host: "10.0.0.1".into(),
        port: 5432,
    }))
    .render();
    for restart_only in [
        "recovery_target_timeline",
        "max_wal_senders",
        "wal_level",
        "hot_standby",
    ] {
        let line = |text: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{restart_only} =")))
                .map(str::to_string)
        };
        assert_eq!(line(&primary), line(&standby), "{restart_only}");
        assert!(
            line(&primary).is_some(),
            "{restart_only} missing:\n{primary}"
        );
    }
}

#[test]
fn standby_conninfo_names_the_member_and_uses_the_passfile() {
    let c = conf(Some(Upstream {
        name: "n1".into(),
        host: "127.0.0.1".into(),
        port: 5432,
    }));
    let info = c.primary_conninfo().unwrap();
    assert!(info.starts_with("host='127.0.0.1' port=5432 "), "{info}");
    assert!(info.contains("application_name='n2'"));
    assert!(info.contains(r"passfile='/data/it\'s/pgpass'"));
    assert!(!info.contains("password"));
    let text = c.render();
    assert!(text.contains("primary_slot_name = 'n2'"));
    // the conninfo's quotes are doubled inside the conf value
    assert!(text.contains(r"passfile=''/data/it\\''s/pgpass''"));
}

/// Issue 11: with TLS the member serves its certificate, streams only from an upstream
/// that proves its name, and accepts replication over TLS only.
#[test]
fn with_tls_replication_verifies_the_upstream_and_needs_tls() {
    let mut c = conf(Some(Upstream {
        name: "n1".into(),
        host: "127.0.0.1".into(),
        port: 5432,
    }));
    c.tls = Some(crate::tls::TlsFiles {
        ca_cert: "/c/tls/ca.crt".into(),
        server_cert: "/c/n2/server.crt".into(),
        server_key: "/c/n2/server.key".into(),
    });
    let info = c.primary_conninfo().unwrap();
    assert!(
        info.starts_with(
            "host='n1' hostaddr='127.0.0.1' port=5432 sslmode=verify-full sslrootcert='/c/tls/ca.crt' "
        ),
        "{info}"
    );
    let text = c.render();
    for line in [
        "ssl = 'on'",
        "ssl_cert_file = '/c/n2/server.crt'",
        "ssl_key_file = '/c/n2/server.key'",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
    let hba = render_hba("replicator", &["127.0.0.1".into()], &[], true);
    let repl: Vec<&str> = hba.lines().filter(|l| l.contains("replication")).collect();
    assert!(
        !repl.is_empty() && repl.iter().all(|l| l.starts_with("hostssl ")),
        "{hba}"
    );
}

#[test]
fn owned_parameters_are_refused() {
    assert!(check_user_parameter("max_wal_senders").is_err());
    assert!(check_user_parameter("sync_replication_slots").is_err());
    assert!(check_user_parameter("Port").is_err());
    assert!(check_user_parameter("shared_buffers").is_ok());
    assert!(check_user_parameter("bad name").is_err());
}

/// A recovery target set on the members would stop a standby's replay at that point while it
/// still confirms commits, and its promotion would drop them: refused, whatever the case.
#[test]
fn recovery_targets_are_refused_for_the_members() {
    for name in [
        "recovery_target",
        "recovery_target_lsn",
        "Recovery_Target_Time",
        "recovery_target_action",
        "promote_trigger_file",
    ] {
        assert_eq!(
            check_user_parameter(name),
            Err(ParameterRefused::RecoveryTarget(name.to_string())),
            "{name}"
        );
    }
    assert_eq!(check_user_parameter("recovery_min_apply_delay"), Ok(()));
}

#[test]
fn hba_allows_replication_only_for_the_role() {
    let hba = render_hba(
        "replicator",
        &["127.0.0.1".into(), "10.0.0.2".into()],
        &[],
        false,
    );
    let repl: Vec<&str> = hba.lines().filter(|l| l.contains("replication")).collect();
    assert_eq!(repl.len(), 2);
    assert!(repl
        .iter()
        .all(|l| l.contains("replicator") && l.contains("scram-sha-256")));
    assert!(!hba
        .lines()
        .any(|l| l.contains("trust") || l.contains(" md5")));
}

/// Issue 11: a value cannot end its line in postgresql.conf and start a setting of its
/// own, and `include` directives are not parameters a user may pass through.
#[test]
fn values_stay_on_their_line_and_includes_are_refused() {
    assert_eq!(quote_conf("a'b\\c"), "'a''b\\\\c'");
    let injected = quote_conf("x'\nshared_preload_libraries = 'evil");
    assert!(!injected.contains('\n'), "{injected}");
    assert!(check_user_value("8MB").is_ok());
    assert!(check_user_value("x\nssl = off").is_err());
    for directive in ["include", "include_dir", "INCLUDE_IF_EXISTS"] {
        assert!(check_user_parameter(directive).is_err(), "{directive}");
    }
}

/// Issue 11: `replication_from` reaches pg_hba.conf only as addresses.
#[test]
fn hba_addresses_are_addresses() {
    for good in [
        "10.0.0.0/24",
        "10.0.0.7",
        "::1",
        "fd00::/8",
        "db1.example.com",
    ] {
        assert_eq!(check_hba_address(good), Ok(()), "{good}");
    }
    for bad in [
        "all",
        "samenet",
        "0.0.0.0/0 trust",
        "10.0.0.0/24\nhost all all 0.0.0.0/0 trust",
        "",
        "10.0.0.0/x",
        "-x.example",
    ] {
        assert!(
            matches!(
                check_hba_address(bad),
                Err(HbaAddressRefused::NotAnAddress(_))
            ),
            "{bad:?}"
        );
    }
    assert_eq!(
        check_hba_address("10.0.0.0/33"),
        Err(HbaAddressRefused::PrefixTooLong("10.0.0.0/33".into()))
    );
}

/// Issue 12: `wal_level = logical` for logical decoding, and on PostgreSQL 17+ standbys keep
/// failover logical slots in sync (over a primary_conninfo that names a database).
#[test]
fn logical_decoding_and_slot_synchronization() {
    assert_eq!(check_user_setting("wal_level", "logical"), Ok(()));
    assert_eq!(check_user_setting("wal_level", "replica"), Ok(()));
    assert_eq!(
        check_user_setting("wal_level", "minimal"),
        Err(ParameterRefused::WalLevel("minimal".into()))
    );
    let mut c = conf(Some(Upstream {
        name: "n1".into(),
        host: "127.0.0.1".into(),
        port: 5432,
    }));
    c.parameters.insert("wal_level".into(), "logical".into());
    let text = c.render();
    assert!(text.contains("wal_level = 'logical'"), "{text}");
    assert_eq!(text.matches("wal_level").count(), 1, "{text}");
    assert!(!text.contains("sync_replication_slots"), "15: {text}");
    assert!(!c.primary_conninfo().unwrap().contains("dbname"));
    c.major = 17;
    let text = c.render();
    assert!(text.contains("sync_replication_slots = 'on'"), "{text}");
    assert!(c.primary_conninfo().unwrap().contains(" dbname=postgres "));
    c.standby = false;
    assert!(!c.render().contains("sync_replication_slots"));
}

/// An asynchronous cluster's standby waits for a standby nobody is, should it be promoted
/// behind pgha's back; its primary (pgha's own promotion writes the primary's file) and a
/// synchronous cluster's members render the cluster's names.
#[test]
fn an_asynchronous_standby_would_wait_for_nobody_if_promoted_outside_pgha() {
    let standby = Some(Upstream {
        name: "n1".into(),
        host: "10.0.0.1".into(),
        port: 5432,
    });
    let guard = format!(
        "synchronous_standby_names = {}",
        quote_conf(NOT_PROMOTED_BY_PGHA)
    );
    assert!(conf(standby.clone()).render().contains(&guard));
    let mut waiting = conf(None);
    waiting.standby = true;
    assert!(
        waiting.render().contains(&guard),
        "a standby without an upstream yet"
    );
    assert!(!conf(None).render().contains("synchronous_standby_names"));
    for upstream in [None, standby] {
        let mut c = conf(upstream);
        c.synchronous_standby_names = "FIRST 1 (\"n1\", \"n3\")".into();
        let text = c.render();
        assert!(
            text.contains("synchronous_standby_names = 'FIRST 1 (\"n1\", \"n3\")'"),
            "{text}"
        );
        assert!(!text.contains("outside pgha"), "{text}");
    }
}

/// A standby runs with at least the settings of the primary its pg_control records: lower
/// ones would keep it from starting (the primary's raised and restarted first, or a
/// configuration lowered and the standbys restarted first), or pause its replay for good.
#[test]
fn a_standby_runs_with_at_least_the_primarys_settings() {
    let primary_settings = HotStandbySettings {
        max_connections: 200,
        max_worker_processes: 16,
        max_wal_senders: 30,
        max_prepared_transactions: 0,
        max_locks_per_transaction: 64,
    };
    let mut c = conf(Some(Upstream {
        name: "n1".into(),
        host: "10.0.0.1".into(),
        port: 5432,
    }));
    c.primary_settings = primary_settings;
    c.parameters.insert("max_connections".into(), "100".into());
    c.parameters
        .insert("max_locks_per_transaction".into(), "128".into());
    let text = c.render();
    let last = |key: &str| last_in(&text, key);
    // Raised, after the user's own value (the last line wins).
    assert_eq!(last("max_connections").as_deref(), Some("200"), "{text}");
    assert_eq!(last("max_wal_senders").as_deref(), Some("30"), "{text}");
    // Not configured, the primary's above PostgreSQL's default: the primary's. Above the
    // primary's: the user's.
    assert_eq!(
        last("max_worker_processes").as_deref(),
        Some("16"),
        "{text}"
    );
    assert_eq!(
        last("max_locks_per_transaction").as_deref(),
        Some("128"),
        "{text}"
    );
    // Not configured, the primary's at the default: not rendered (a promotion dropping the
    // line would show it as pending restart).
    assert_eq!(last("max_prepared_transactions"), None, "{text}");
    c.parameters.remove("max_locks_per_transaction");
    assert_eq!(last_in(&c.render(), "max_locks_per_transaction"), None);
    assert!(text.contains("needs at least (from pg_control)"), "{text}");

    // A primary runs with what is configured: its own values are the ones that count.
    c.standby = false;
    let text = c.render();
    assert!(!text.contains("from pg_control"), "{text}");
    assert!(text.contains("max_connections = '100'"), "{text}");
    assert!(text.contains("max_wal_senders = '10'"), "{text}");
}

/// The value the last line setting `key` gives it.
fn last_in(text: &str, key: &str) -> Option<String> {
    text.lines()
        .rfind(|l| l.starts_with(&format!("{key} = ")))
        .map(|l| {
            l.split_once(" = ")
                .unwrap()
                .1
                .trim_matches('\'')
                .to_string()
        })
}
