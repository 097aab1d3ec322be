//! A TCP forwarder whose delay a script sets by writing a file: `delay_link LISTEN TARGET FILE`
//! forwards every connection made to LISTEN to TARGET, each chunk delivered late by what FILE
//! says ("LEAST_MS MOST_MS", or one figure; no file or an empty one: no delay), read every
//! 100 ms. bench/chaos_dist.sh puts one between each host and etcd for its `etcd-slow` fault
//! (this kernel has no netem).

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use pgha_testkit::{Latency, TcpLink};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, target, file] = args.as_slice() else {
        eprintln!("usage: delay_link LISTEN_ADDR TARGET_ADDR DELAY_FILE");
        return ExitCode::from(2);
    };
    let (Ok(listen), Ok(target)) = (listen.parse::<SocketAddr>(), target.parse::<SocketAddr>())
    else {
        eprintln!("delay_link: LISTEN_ADDR and TARGET_ADDR are ip:port ({listen}, {target})");
        return ExitCode::from(2);
    };
    let link = match TcpLink::start(listen, target) {
        Ok(link) => link,
        Err(e) => {
            eprintln!("delay_link: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut in_force = Latency::NONE;
    loop {
        match latency_in(Path::new(file)) {
            Ok(latency) if latency != in_force => {
                link.set(latency);
                eprintln!(
                    "delay_link {listen} -> {target}: {} to {} ms",
                    latency.least.as_millis(),
                    latency.most.as_millis()
                );
                in_force = latency;
            }
            Ok(_) => {}
            Err(text) => eprintln!("delay_link: {file}: not LEAST_MS [MOST_MS]: {text:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The latency `file` asks for; no file means none. `Err` carries the text it could not read.
fn latency_in(file: &Path) -> Result<Latency, String> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let figures: Result<Vec<u64>, _> = text.split_whitespace().map(str::parse::<u64>).collect();
    match figures.as_deref() {
        Ok([]) => Ok(Latency::NONE),
        Ok([ms]) => Ok(Latency::fixed(Duration::from_millis(*ms))),
        Ok([least, most]) if least <= most => Ok(Latency {
            least: Duration::from_millis(*least),
            most: Duration::from_millis(*most),
        }),
        _ => Err(text),
    }
}
