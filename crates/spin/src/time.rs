//! Waiting. On WASI 0.2 an instance serves one request, so blocking the
//! thread costs nothing else; on WASI 0.3 it would stall every request the
//! instance runs at once, so the wait is the host's async clock.

use std::time::Duration;

/// Returns after `duration`.
#[cfg(not(feature = "wasip3"))]
pub async fn sleep(duration: Duration) {
    std::thread::sleep(duration);
}

/// Returns after `duration`, letting the instance's other requests run.
#[cfg(feature = "wasip3")]
pub async fn sleep(duration: Duration) {
    spin_sdk_wasip3::time::sleep(duration).await;
}
