//! The proxy raises its open-files limit at start and warns when the limit is too low for
//! `max_client_conn` (issue 11). Its own binary: it changes this process's limits.

use pgha_proxy::{CancellationToken, Proxy, ProxyConfig, Targets};

fn limits() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    (lim.rlim_cur, lim.rlim_max)
}

fn set_limits(soft: u64, hard: u64) {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

async fn bind(max_client_conn: usize) {
    let cfg = ProxyConfig {
        rw_listen: Some("127.0.0.1:0".into()),
        ro_listen: None,
        max_client_conn,
        ..ProxyConfig::default()
    };
    let (_tx, rx) = tokio::sync::watch::channel(Targets::none());
    let proxy = Proxy::bind(cfg, rx, CancellationToken::new()).await;
    drop(proxy.expect("bind"));
}

#[tokio::test]
async fn open_files_limit_is_raised_and_a_low_one_named() {
    let logs = pgha_testkit::CapturedLogs::start();

    // A soft limit below the hard one is raised to it; no warning when the hard one suffices.
    let (_, hard) = limits();
    assert!(
        hard >= 2048,
        "this test needs a hard limit of at least 2048 (got {hard})"
    );
    set_limits(256, hard);
    bind(100).await;
    assert_eq!(limits(), (hard, hard), "soft limit raised to the hard one");
    let out = logs.take();
    assert!(!out.contains("WARN"), "{out}");

    // A hard limit too low for max_client_conn: a warning naming the limit and what is needed.
    set_limits(1024, 1024);
    bind(5000).await;
    let out = logs.take();
    assert!(
        out.contains("WARN") && out.contains("RLIMIT_NOFILE") && out.contains("1024"),
        "{out}"
    );
    assert!(
        out.contains("max_client_conn") && out.contains("5000"),
        "{out}"
    );
}
