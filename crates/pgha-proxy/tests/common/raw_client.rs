//! A hand-written plaintext client of the startup and SCRAM exchange, for what real clients
//! never send: repeated startup parameters, malformed final messages.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any one answer may take.
const WITHIN: Duration = Duration::from_secs(20);

/// Connects to `addr` and sends a StartupMessage (protocol 3.0) with `params`, as given
/// (repeats included).
pub async fn startup(addr: SocketAddr, params: &[(&str, &str)]) -> TcpStream {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (k, v) in params {
        for s in [k, v] {
            body.extend_from_slice(s.as_bytes());
            body.push(0);
        }
    }
    body.push(0);
    let mut s = TcpStream::connect(addr).await.unwrap();
    let len = (body.len() + 4) as u32;
    s.write_all(&[&len.to_be_bytes()[..], &body].concat())
        .await
        .unwrap();
    s
}

/// The next message: its tag and body.
pub async fn read_msg(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let read = async {
        let mut head = [0u8; 5];
        s.read_exact(&mut head).await?;
        let len = u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len - 4];
        s.read_exact(&mut body).await?;
        Ok::<_, std::io::Error>((head[0], body))
    };
    tokio::time::timeout(WITHIN, read)
        .await
        .expect("no answer")
        .expect("read a message")
}

/// The SQLSTATE of an ErrorResponse body.
pub fn sqlstate(body: &[u8]) -> String {
    body.split(|b| *b == 0)
        .find_map(|f| f.strip_prefix(b"C"))
        .map(|c| String::from_utf8_lossy(c).to_string())
        .unwrap_or_default()
}

/// Sends a typed message.
async fn send(s: &mut TcpStream, tag: u8, body: &[u8]) {
    let len = (body.len() + 4) as u32;
    let msg = [&[tag][..], &len.to_be_bytes(), body].concat();
    s.write_all(&msg).await.unwrap();
}

/// Logs in as `user` with SCRAM-SHA-256 (no channel binding) up to the client-final-message,
/// which `last` makes from the combined nonce; returns the answer to it (tag, body). Panics
/// unless the server asks for SCRAM-SHA-256 and answers the first message.
pub async fn scram_final(
    addr: SocketAddr,
    user: &str,
    last: impl Fn(&str) -> String,
) -> (u8, Vec<u8>) {
    let mut s = startup(addr, &[("user", user), ("database", "postgres")]).await;
    let (tag, body) = read_msg(&mut s).await;
    assert_eq!(
        (tag, &body[..4]),
        (b'R', &10u32.to_be_bytes()[..]),
        "{body:?}"
    );
    let first = b"n,,n=,r=rawclientnonce";
    let mut initial = b"SCRAM-SHA-256\0".to_vec();
    initial.extend_from_slice(&(first.len() as u32).to_be_bytes());
    initial.extend_from_slice(first);
    send(&mut s, b'p', &initial).await;
    let (tag, body) = read_msg(&mut s).await;
    assert_eq!(
        (tag, &body[..4]),
        (b'R', &11u32.to_be_bytes()[..]),
        "{body:?}"
    );
    let server_first = String::from_utf8(body[4..].to_vec()).unwrap();
    let nonce = server_first
        .split(',')
        .find_map(|a| a.strip_prefix("r="))
        .unwrap()
        .to_string();
    send(&mut s, b'p', last(&nonce).as_bytes()).await;
    read_msg(&mut s).await
}

/// A proof of the right length that matches no password.
pub fn some_proof() -> String {
    format!("{}=", "A".repeat(43))
}
