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

/// What the supervisor needs from a watchdog device (the kernel's, or a stand-in in tests).
pub trait Device: Sized {
    /// Opens the device (which starts its countdown) with `timeout_s`.
    fn open(device: &Path, timeout_s: u32) -> Result<Self, WatchdogError>;
    /// Restarts the countdown.
    fn keepalive(&mut self);
    /// Stops it cleanly: no reset.
    fn disarm(self);
}

impl Device for Watchdog {
    fn open(device: &Path, timeout_s: u32) -> Result<Self, WatchdogError> {
        Watchdog::open(device, timeout_s)
    }
    fn keepalive(&mut self) {
        Watchdog::keepalive(self)
    }
    fn disarm(self) {
        Watchdog::disarm(self)
    }
}

/// The supervisor's duty to the watchdog, one round at a time: keep the device alive while
/// the lease is armed and has time left, close it cleanly once disarmed or fenced, and stop
/// keeping it alive when the deadline passes with PostgreSQL still up (then the kernel resets
/// the machine, should the supervisor itself be unable to fence).
pub struct Keeper<D: Device> {
    mode: WatchdogMode,
    device: PathBuf,
    timeout_s: u32,
    dog: Option<D>,
    failed: bool,
    /// Messages for the member's log.
    pub said: Vec<String>,
}

impl<D: Device> Keeper<D> {
    pub fn new(mode: WatchdogMode, device: &Path, timeout_s: u32) -> Self {
        Keeper {
            mode,
            device: device.to_path_buf(),
            timeout_s,
            dog: None,
            failed: false,
            said: Vec::new(),
        }
    }

    /// One round with the lease's `remaining` ms (`None`: disarmed). Returns the remaining
    /// time the supervisor must act on: `Some(0)` when the watchdog is required but unusable
    /// (never writable without it).
    pub fn round(&mut self, remaining: Option<u64>) -> Option<u64> {
        match remaining {
            Some(left) if left > 0 && self.mode != WatchdogMode::Off => {
                if self.dog.is_none() && !self.failed {
                    match D::open(&self.device, self.timeout_s) {
                        Ok(d) => {
                            self.said.push(format!(
                                "watchdog {} armed ({} s) while the lease is held",
                                self.device.display(),
                                self.timeout_s
                            ));
                            self.dog = Some(d);
                        }
                        Err(e) => {
                            self.said.push(format!("watchdog ({}): {e}", self.mode));
                            self.failed = true;
                        }
                    }
                }
                if let Some(d) = self.dog.as_mut() {
                    d.keepalive();
                }
                if self.failed && self.mode == WatchdogMode::Required {
                    return Some(0);
                }
                remaining
            }
            None => {
                self.failed = false;
                self.release();
                None
            }
            other => other,
        }
    }

    /// Closes the device cleanly (PostgreSQL fenced or gone): no reset.
    pub fn release(&mut self) {
        if let Some(d) = self.dog.take() {
            d.disarm();
        }
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

    /// A stand-in device that records what the supervisor does with it (this machine's
    /// kernel has no watchdog driver, and no CUSE to fake one at the ioctl level).
    struct Fake {
        log: std::rc::Rc<std::cell::RefCell<Vec<&'static str>>>,
    }

    thread_local! {
        static LOG: std::rc::Rc<std::cell::RefCell<Vec<&'static str>>> = Default::default();
        static OPENS: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
    }

    impl Device for Fake {
        fn open(device: &Path, _timeout_s: u32) -> Result<Self, WatchdogError> {
            if !OPENS.with(|o| o.get()) {
                return Err(WatchdogError::Open {
                    device: device.into(),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                });
            }
            let log = LOG.with(|l| l.clone());
            log.borrow_mut().push("open");
            Ok(Fake { log })
        }
        fn keepalive(&mut self) {
            self.log.borrow_mut().push("keepalive");
        }
        fn disarm(self) {
            self.log.borrow_mut().push("disarm");
        }
    }

    fn taken() -> Vec<&'static str> {
        LOG.with(|l| std::mem::take(&mut *l.borrow_mut()))
    }

    /// Kept alive while the lease has time left; at the deadline (0 left) no more keep-alives
    /// (the kernel resets the machine if the supervisor cannot fence); closed cleanly when the
    /// lease is disarmed or PostgreSQL is fenced.
    #[test]
    fn the_supervisor_keeps_the_watchdog_alive_only_while_the_lease_holds() {
        OPENS.with(|o| o.set(true));
        let mut k: Keeper<Fake> = Keeper::new(WatchdogMode::Automatic, Path::new("/dev/wd"), 1);
        assert_eq!(k.round(Some(900)), Some(900));
        assert_eq!(k.round(Some(500)), Some(500));
        assert_eq!(taken(), vec!["open", "keepalive", "keepalive"]);
        assert_eq!(k.round(Some(0)), Some(0));
        assert_eq!(
            taken(),
            Vec::<&str>::new(),
            "no keep-alive past the deadline"
        );
        k.release();
        assert_eq!(taken(), vec!["disarm"]);
        assert_eq!(k.round(Some(700)), Some(700));
        assert_eq!(k.round(None), None);
        assert_eq!(taken(), vec!["open", "keepalive", "disarm"]);
        // Off: the device is never touched.
        let mut off: Keeper<Fake> = Keeper::new(WatchdogMode::Off, Path::new("/dev/wd"), 1);
        assert_eq!(off.round(Some(900)), Some(900));
        assert!(taken().is_empty());
    }

    /// Required but unusable: the supervisor must act as if the deadline had passed (fence);
    /// automatic: it carries on without.
    #[test]
    fn a_required_watchdog_that_cannot_open_fences() {
        OPENS.with(|o| o.set(false));
        let mut required: Keeper<Fake> =
            Keeper::new(WatchdogMode::Required, Path::new("/dev/wd"), 1);
        assert_eq!(required.round(Some(900)), Some(0));
        assert!(required.said[0].contains("/dev/wd"), "{:?}", required.said);
        let mut automatic: Keeper<Fake> =
            Keeper::new(WatchdogMode::Automatic, Path::new("/dev/wd"), 1);
        assert_eq!(automatic.round(Some(900)), Some(900));
        OPENS.with(|o| o.set(true));
        assert!(taken().is_empty());
    }
}
