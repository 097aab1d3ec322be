//! A request that may take long (a member stopping, a reload) says on stderr that it still waits.

use std::io::Write;
use std::time::Duration;

/// After this long without an answer, a request that may take long says it still waits.
const FIRST_WAITING_LINE: Duration = Duration::from_secs(5);
/// And again this often, until the answer comes.
const NEXT_WAITING_LINE: Duration = Duration::from_secs(30);

/// Awaits `request`, writing `still(seconds waited)` on stderr after [`FIRST_WAITING_LINE`]
/// and every [`NEXT_WAITING_LINE`] after it, so that a long wait is not a silent one (stdout
/// keeps only the answer).
pub async fn said_while_waiting<T>(
    request: impl std::future::Future<Output = T>,
    still: impl Fn(u64) -> String,
) -> T {
    waiting_said_to(request, still, |line| {
        let _ = writeln!(std::io::stderr(), "{line}");
    })
    .await
}

/// [`said_while_waiting`], each line given to `say`.
async fn waiting_said_to<T>(
    request: impl std::future::Future<Output = T>,
    still: impl Fn(u64) -> String,
    mut say: impl FnMut(String),
) -> T {
    let started = tokio::time::Instant::now();
    let mut next = started + FIRST_WAITING_LINE;
    tokio::pin!(request);
    loop {
        tokio::select! {
            answer = &mut request => return answer,
            _ = tokio::time::sleep_until(next) => {
                say(still(started.elapsed().as_secs()));
                next += NEXT_WAITING_LINE;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// A long request is said to be waited for after 5 s, then every 30 s; a quick one is not.
    #[tokio::test(start_paused = true)]
    async fn a_long_request_says_it_still_waits() {
        let mut lines = Vec::new();
        let slow = async {
            tokio::time::sleep(Duration::from_secs(70)).await;
            "answer"
        };
        let answer =
            super::waiting_said_to(slow, |s| format!("still after {s} s"), |l| lines.push(l)).await;
        assert_eq!(answer, "answer");
        assert_eq!(
            lines,
            ["still after 5 s", "still after 35 s", "still after 65 s"]
        );
        let mut quick_lines = Vec::new();
        let quick = tokio::time::sleep(Duration::from_millis(4900));
        super::waiting_said_to(quick, |s| format!("{s}"), |l| quick_lines.push(l)).await;
        assert!(quick_lines.is_empty(), "{quick_lines:?}");
    }
}
