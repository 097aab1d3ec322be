//! The forwarding itself: each connection, each call on it, caught by a rule or streamed.

use super::*;

use bytes::Bytes;
use h2::{RecvStream, SendStream};
use http::{Request, Response};
use tokio::net::TcpStream;

pub(super) async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    shared: Arc<(Mutex<Shared>, Condvar)>,
) {
    while let Ok((client, _)) = listener.accept().await {
        tokio::spawn(forward_connection(client, target, shared.clone()));
    }
}

/// One client connection: each of its calls forwarded on one upstream connection.
async fn forward_connection(
    client: TcpStream,
    target: SocketAddr,
    shared: Arc<(Mutex<Shared>, Condvar)>,
) -> Option<()> {
    let _ = client.set_nodelay(true);
    let upstream = TcpStream::connect(target).await.ok()?;
    let _ = upstream.set_nodelay(true);
    let (sender, upstream_conn) = h2::client::handshake(upstream).await.ok()?;
    tokio::spawn(upstream_conn);
    let mut server = h2::server::handshake(client).await.ok()?;
    while let Some(Ok((request, respond))) = server.accept().await {
        let sender = sender.clone();
        tokio::spawn(forward_call(request, respond, sender, shared.clone()));
    }
    Some(())
}

/// One call: held if a rule catches it, otherwise streamed both ways as it comes.
async fn forward_call(
    request: Request<RecvStream>,
    respond: h2::server::SendResponse<Bytes>,
    sender: h2::client::SendRequest<Bytes>,
    shared: Arc<(Mutex<Shared>, Condvar)>,
) -> Option<()> {
    let (parts, mut body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let rules: Vec<Rule> = (shared.0.lock().unwrap().rules.iter())
        .filter(|r| r.calls.path == path)
        .cloned()
        .collect();
    let head = Request::from_parts(parts, ());
    if rules.is_empty() {
        return stream_call(head, Vec::new(), body, respond, sender).await;
    }
    // A call on a path a rule watches: its first message says whether a rule catches it.
    let first = first_message(&mut body).await;
    let Some(wait) = caught(&shared, &rules, &first) else {
        return stream_call(head, first, body, respond, sender).await;
    };
    // Sent on whatever became of the caller (it may have given up long before); a call
    // never released is never sent.
    if !wait.over().await {
        return None;
    }
    shared.0.lock().unwrap().sent_on_at = Some(Instant::now());
    let answered = match send_start(head, first, body, sender).await {
        Some(answer) => grpc_status(answer).await,
        None => "not sent: the connection to the server is gone".to_string(),
    };
    shared.0.lock().unwrap().held_answer = Some(answered);
    Some(())
}

/// How the call whose first message is `first` waits, if one of `rules` (armed when it came)
/// still armed catches it; a rule holding the next call only is spent by it.
fn caught(shared: &(Mutex<Shared>, Condvar), rules: &[Rule], first: &[u8]) -> Option<Wait> {
    let rule = rules.iter().find(|r| r.calls.catch(first))?;
    let (lock, cond) = shared;
    let mut s = lock.lock().unwrap();
    let armed = s.rules.iter().position(|r| r.id == rule.id)?;
    s.held_at.get_or_insert_with(Instant::now);
    cond.notify_all();
    Some(match rule.hold {
        Hold::NextFor(delay) => {
            s.rules.remove(armed);
            Wait::For(delay)
        }
        Hold::AllUntilReleased => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            s.waiting.push(tx);
            Wait::UntilReleased(rx)
        }
    })
}

/// Reads a request's body up to the end of its first gRPC message (a 5-byte prefix, a flag
/// then the message's length in four bytes, big-endian; then the message): a unary call's
/// whole body, a stream's first request. Less if the body ends or fails first.
async fn first_message(body: &mut RecvStream) -> Vec<u8> {
    let mut read = Vec::new();
    let whole = |read: &[u8]| {
        read.len() >= 5 && {
            let len = u32::from_be_bytes([read[1], read[2], read[3], read[4]]);
            read.len() >= 5 + len as usize
        }
    };
    while !whole(&read) {
        let Some(Ok(chunk)) = body.data().await else {
            break;
        };
        let _ = body.flow_control().release_capacity(chunk.len());
        read.extend_from_slice(&chunk);
    }
    read
}

/// The `grpc-status` the server answered with (in the headers or the trailers), read to the
/// end, or why there is none.
async fn grpc_status(answer: h2::client::ResponseFuture) -> String {
    let response = match answer.await {
        Ok(response) => response,
        Err(e) => return format!("no answer: {e}"),
    };
    let status = |headers: &http::HeaderMap| {
        headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map(|v| format!("grpc-status {v}"))
    };
    if let Some(said) = status(response.headers()) {
        return said;
    }
    let mut body = response.into_body();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    match body.trailers().await {
        Ok(Some(trailers)) => status(&trailers).unwrap_or_else(|| "no grpc-status".into()),
        Ok(None) => "no trailers".to_string(),
        Err(e) => format!("answer cut: {e}"),
    }
}

/// Sends a request upstream: `first` (what was read of its body already), then the rest of
/// `body` as it comes; the response coming.
async fn send_start(
    head: Request<()>,
    first: Vec<u8>,
    body: RecvStream,
    sender: h2::client::SendRequest<Bytes>,
) -> Option<h2::client::ResponseFuture> {
    let mut sender = sender.ready().await.ok()?;
    let ended = body.is_end_stream();
    let (answer, mut send) = sender.send_request(head, ended && first.is_empty()).ok()?;
    if !first.is_empty() {
        send.send_data(Bytes::from(first), ended).ok()?;
    }
    if !ended {
        tokio::spawn(pipe(body, send));
    }
    Some(answer)
}

/// Streams a call both ways: `first` and the rest of the request's frames upstream, the
/// response's back.
async fn stream_call(
    head: Request<()>,
    first: Vec<u8>,
    body: RecvStream,
    respond: h2::server::SendResponse<Bytes>,
    sender: h2::client::SendRequest<Bytes>,
) -> Option<()> {
    let answer = send_start(head, first, body, sender).await?;
    relay_response(answer, respond).await
}

/// The upstream response, relayed to the caller (headers, data, trailers).
async fn relay_response(
    answer: h2::client::ResponseFuture,
    mut respond: h2::server::SendResponse<Bytes>,
) -> Option<()> {
    let (parts, body) = answer.await.ok()?.into_parts();
    let end = body.is_end_stream();
    let send = respond
        .send_response(Response::from_parts(parts, ()), end)
        .ok()?;
    if !end {
        pipe(body, send).await;
    }
    Some(())
}

/// Copies `from`'s data frames and trailers to `to`, until either ends; a caller that went
/// away resets the other side.
async fn pipe(mut from: RecvStream, mut to: SendStream<Bytes>) {
    while let Some(chunk) = from.data().await {
        let Ok(chunk) = chunk else {
            to.send_reset(h2::Reason::CANCEL);
            return;
        };
        let _ = from.flow_control().release_capacity(chunk.len());
        if to.send_data(chunk, false).is_err() {
            return;
        }
    }
    match from.trailers().await {
        Ok(Some(trailers)) => {
            let _ = to.send_trailers(trailers);
        }
        Ok(None) => {
            let _ = to.send_data(Bytes::new(), true);
        }
        Err(_) => to.send_reset(h2::Reason::CANCEL),
    }
}
