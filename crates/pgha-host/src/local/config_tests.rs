//! Unit tests of pgha.toml: loading, defaults and the errors that name the key.

use super::*;

fn load_text(text: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(CONFIG_FILE);
    std::fs::write(&file, text).unwrap();
    Config::load(&file)
}

#[test]
fn round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(CONFIG_FILE);
    let mut config = Config::new("demo", 3, 54320);
    config
        .postgresql
        .parameters
        .insert("shared_buffers".into(), toml::Value::String("16MB".into()));
    config
        .postgresql
        .parameters
        .insert("max_connections".into(), toml::Value::Integer(50));
    config.save(&file).unwrap();
    let loaded = Config::load(&file).unwrap();
    assert_eq!(loaded, config);
    assert_eq!(loaded.parameters()["max_connections"], "50");
    assert_eq!(loaded.member_port(1), 54331);
}

/// The files `pgha up` writes as it makes a cluster outlive a power loss right after: before
/// their directory was synced after the rename, the configuration came back missing.
#[test]
fn a_new_clusters_files_survive_a_power_loss() {
    use crate::secrets::{Secrets, SECRETS_FILE};
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("img");
    let mut disk = pgha_testkit::LoopDisk::mount(&image, &tmp.path().join("disk"), 32);
    let dir = disk.path().to_path_buf();
    let config = Config::new("demo", 3, 54320);
    let secrets = Secrets::generate();
    secrets.save(&dir.join(SECRETS_FILE)).unwrap();
    config.save(&dir.join(CONFIG_FILE)).unwrap();
    disk.lose_power();
    assert_eq!(Config::load(&dir.join(CONFIG_FILE)).unwrap(), config);
    assert_eq!(Secrets::load(&dir.join(SECRETS_FILE)).unwrap(), secrets);
}

#[test]
fn errors_name_the_key_and_file() {
    let error = |text: &str| load_text(text).unwrap_err().to_string();
    let cluster = "[cluster]\nname = \"x\"\nbase_port = 6000\n";
    let err = error(&format!("{cluster}members = \"three\"\n"));
    assert!(
        err.contains("pgha.toml") && err.contains("members"),
        "{err}"
    );
    let params = |p: &str| format!("{cluster}members = 3\n[postgresql.parameters]\n{p}\n");
    let err = error(&params("max_wal_senders = 3"));
    assert!(
        err.contains("postgresql.parameters.max_wal_senders") && err.contains("managed by pgha"),
        "{err}"
    );
    // wal_level is the one owned setting a user may change, to logical only.
    let err = error(&params("wal_level = \"minimal\""));
    assert!(
        err.contains("postgresql.parameters.wal_level") && err.contains("`logical`"),
        "{err}"
    );
    assert!(load_text(&params("wal_level = \"logical\"")).is_ok());
    let err = error(&params("search_path = [\"a\", \"b\"]"));
    assert!(
        err.contains("postgresql.parameters.search_path")
            && err.contains("a TOML array is not a PostgreSQL setting value"),
        "{err}"
    );
    let err = error(&format!("{cluster}members = 0\n"));
    assert!(err.contains("cluster.members"), "{err}");
    let err = error(&format!("{cluster}members = 3\ncolour = 1\n"));
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn param_flags() {
    assert_eq!(parse_param_flag("work_mem=8MB").unwrap().0, "work_mem");
    assert!(parse_param_flag("work_mem").is_err());
    use pgha_pg::conf::ParameterRefused;
    let refused = |flag: &str| match parse_param_flag(flag) {
        Err(ParamFlagError::Refused { refused, .. }) => refused,
        other => panic!("{flag:?}: {other:?}"),
    };
    assert_eq!(refused("port=5"), ParameterRefused::Owned("port".into()));
    // Issue 11: no second line smuggled into postgresql.conf, no include directive.
    assert_eq!(
        refused("work_mem=8MB\nssl=off"),
        ParameterRefused::ControlCharacter('\n')
    );
    assert_eq!(
        refused("include=/etc/x.conf"),
        ParameterRefused::Owned("include".into())
    );
}

#[test]
fn a_tag_section_refuses_unknown_keys() {
    let cluster = "[cluster]\nname = \"x\"\nbase_port = 6000\nmembers = 3\n";
    for key in ["nofailver = true", "failover_priority = 2"] {
        let err = load_text(&format!("{cluster}[tags.n3]\n{key}\n"))
            .unwrap_err()
            .to_string();
        let name = key.split(' ').next().unwrap();
        assert!(
            err.contains("pgha.toml")
                && err.contains(&format!("[tags.n3]: unknown key `{name}`"))
                && err.contains("nofailover, noloadbalance, nosync, priority"),
            "{err}"
        );
    }
    // Known tags load as before, omitted ones keep their defaults.
    let config = load_text(&format!(
        "{cluster}[tags.n3]\nnofailover = true\npriority = 2\n"
    ))
    .unwrap();
    let tags = &config.tags["n3"];
    assert!(tags.nofailover && !tags.nosync && !tags.noloadbalance);
    assert_eq!(tags.priority, 2);
    let err = load_text(&format!("{cluster}[tags.n3]\npriority = \"high\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[tags.n3]") && err.contains("priority"),
        "{err}"
    );
}
