//! Runs the proxy with a static primary, for benchmarks: `proxy_bench LISTEN BACKEND [THREADS]`.
//!
//! THREADS is the number of session worker threads (default: one per CPU; 0 runs sessions on
//! the accepting thread). Stops on SIGINT or SIGTERM and prints the metrics snapshot as JSON on
//! stderr.

use pgha_proxy::{Backend, CancellationToken, Proxy, ProxyConfig, Targets};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: proxy_bench LISTEN_ADDR BACKEND_ADDR [THREADS]");
        std::process::exit(2);
    }
    let threads: Option<usize> = args.get(3).map(|t| t.parse().expect("THREADS"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut cfg = ProxyConfig {
            rw_listen: Some(args[1].clone()),
            ro_listen: None,
            ..ProxyConfig::default()
        };
        if let Some(n) = threads {
            cfg.worker_threads = n;
        }
        let (_tx, rx) =
            tokio::sync::watch::channel(Targets::primary(Backend::new("pg", args[2].clone())));
        let shutdown = CancellationToken::new();
        let proxy = Proxy::bind(cfg, rx, shutdown.clone()).await.expect("bind");
        let metrics = proxy.metrics();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            stop.cancel();
        });
        proxy.run().await;
        let snap = metrics.snapshot();
        eprintln!("{}", serde_json::to_string(&snap).expect("json"));
    });
}
