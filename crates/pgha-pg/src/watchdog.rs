//! The Linux watchdog device (`/dev/watchdog`), kept alive by a member's supervisor while its
//! lease is armed: should the supervisor stop running (the host stalls, the process is frozen
//! or killed), the kernel resets the machine before the lease can expire for the others.

use std::io::Write as _;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Whether a member uses the watchdog (as Patroni's `watchdog.mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchdogMode {
    /// Never.
    #[default]
    Off,
    /// When the device can be opened; without it the member leads anyway.
    Automatic,
    /// A member that cannot use the device is never promoted; a leader whose supervisor
    /// cannot activate it fences its PostgreSQL.
    Required,
}

impl std::str::FromStr for WatchdogMode {
    type Err = WatchdogError;
    fn from_str(text: &str) -> Result<Self, WatchdogError> {
        match text {
            "off" => Ok(WatchdogMode::Off),
            "automatic" => Ok(WatchdogMode::Automatic),
            "required" => Ok(WatchdogMode::Required),
            other => Err(WatchdogError::Mode(other.to_string())),
        }
    }
}

impl std::fmt::Display for WatchdogMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WatchdogMode::Off => "off",
            WatchdogMode::Automatic => "automatic",
            WatchdogMode::Required => "required",
        })
    }
}

/// Why the watchdog cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    #[error("watchdog mode {0:?}: expected off, automatic or required")]
    Mode(String),
    #[error("cannot open {device}: {source} (is a watchdog driver loaded? e.g. modprobe softdog)")]
    Open {
        device: PathBuf,
        source: std::io::Error,
    },
    #[error("{device} refused a timeout of {wanted} s: {source}")]
    Timeout {
        device: PathBuf,
        wanted: u32,
        source: nix::Error,
    },
    #[error("{device} runs with a timeout of {actual} s, above the {wanted} s the lease allows")]
    TooLong {
        device: PathBuf,
        wanted: u32,
        actual: i32,
    },
}

nix::ioctl_readwrite!(wdioc_settimeout, b'W', 6, libc::c_int);
nix::ioctl_read!(wdioc_gettimeout, b'W', 7, libc::c_int);
nix::ioctl_read!(wdioc_keepalive, b'W', 5, libc::c_int);

/// An open, running watchdog.
pub struct Watchdog {
    file: std::fs::File,
}

impl Watchdog {
    /// Opens `device` (which starts the countdown) and sets its timeout to `timeout_s`.
    pub fn open(device: &Path, timeout_s: u32) -> Result<Self, WatchdogError> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(device)
            .map_err(|source| WatchdogError::Open {
                device: device.into(),
                source,
            })?;
        let dog = Watchdog { file };
        let fd = dog.file.as_raw_fd();
        let mut wanted: libc::c_int = timeout_s as libc::c_int;
        // SAFETY: the watchdog ioctls read/write one int through the pointer we pass.
        let set = unsafe { wdioc_settimeout(fd, &mut wanted) };
        let mut actual: libc::c_int = 0;
        let get = set.and_then(|_| unsafe { wdioc_gettimeout(fd, &mut actual) });
        if let Err(source) = get {
            dog.disarm();
            return Err(WatchdogError::Timeout {
                device: device.into(),
                wanted: timeout_s,
                source,
            });
        }
        if actual > timeout_s as libc::c_int {
            dog.disarm();
            return Err(WatchdogError::TooLong {
                device: device.into(),
                wanted: timeout_s,
                actual,
            });
        }
        Ok(dog)
    }

    /// Restarts the countdown.
    pub fn keepalive(&mut self) {
        let mut unused: libc::c_int = 0;
        // SAFETY: as above.
        if unsafe { wdioc_keepalive(self.file.as_raw_fd(), &mut unused) }.is_err() {
            let _ = self.file.write_all(b"1");
        }
    }

    /// Stops the watchdog cleanly ("magic close"): no reset.
    pub fn disarm(mut self) {
        let _ = self.file.write_all(b"V");
    }
}

/// Whether `device` can be used with `timeout_s` now (opened, configured, closed cleanly).
pub fn check(device: &Path, timeout_s: u32) -> Result<(), WatchdogError> {
    Watchdog::open(device, timeout_s).map(Watchdog::disarm)
}

/// The watchdog timeout a lease leaves room for: the supervisor may stop keeping it alive at
/// its fence deadline, and the machine must be reset before the store can expire the lease,
/// half a safety margin later (whole seconds, at least one).
pub fn timeout_for(safety_margin_ms: u64) -> u32 {
    ((safety_margin_ms / 2) / 1000).max(1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print() {
        for mode in [
            WatchdogMode::Off,
            WatchdogMode::Automatic,
            WatchdogMode::Required,
        ] {
            assert_eq!(mode.to_string().parse::<WatchdogMode>().unwrap(), mode);
        }
        assert!("sometimes".parse::<WatchdogMode>().is_err());
    }

    #[test]
    fn a_missing_or_fake_device_is_refused_with_the_reason() {
        let err = check(Path::new("/nonexistent/watchdog"), 1).unwrap_err();
        assert!(matches!(err, WatchdogError::Open { .. }), "{err}");
        assert!(err.to_string().contains("softdog"));
        // A file that is not a watchdog cannot take a timeout.
        let fake = std::env::temp_dir().join(format!("pgha-fake-wd-{}", std::process::id()));
        std::fs::write(&fake, "").unwrap();
        let err = check(&fake, 1).unwrap_err();
        assert!(matches!(err, WatchdogError::Timeout { .. }), "{err}");
        std::fs::remove_file(&fake).unwrap();
    }

    #[test]
    fn the_timeout_fits_inside_half_the_margin() {
        assert_eq!(timeout_for(2_500), 1);
        assert_eq!(timeout_for(5_000), 2);
        assert_eq!(timeout_for(500), 1);
    }
}
