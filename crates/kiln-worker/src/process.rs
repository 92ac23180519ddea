//! One Chromium process tree: launched in a process group of its own with a fresh profile directory,
//! and taken down as a whole (SIGTERM to the group, SIGKILL after a grace period), every member
//! reaped and the profile deleted.
//!
//! Chromium is spawned here rather than through chromiumoxide's `Browser::launch` because that
//! leaves Chromium in the worker's own process group: the group could not be signalled without
//! signalling the worker. chromiumoxide then connects to the DevTools address Chromium prints.
//!
//! One kind of process escapes the group: Crashpad's handler daemonises (setsid and a double fork).
//! It cannot be switched off (`--disable-crashpad-for-testing` makes this Chromium's network
//! service crash on an FD-ownership check, failing every navigation), so its database is pointed
//! into the profile directory (through `XDG_CONFIG_HOME`), which makes it recognisable by its
//! command line; it exits by itself once the browser is gone, and is reaped and checked like the
//! rest. A handler can also exit before it was ever seen alive (Crashpad's self-monitor starts on
//! its own schedule, after the DevTools line on a busy machine, and both go as soon as the browser
//! does): a zombie has no command line left, so such a one is known by what it still has, its name
//! and its parent, this worker (see [`exited_helpers`]).

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Flags for every browser. Besides headless operation they keep Chromium from reaching out to
/// Google services (this network refuses them, and a render service has no use for them).
const CHROME_ARGS: &[&str] = &[
    // Root cannot use Chromium's sandbox; isolation comes from the container and the browser
    // contexts, never shared between domains or tenants (see `pool.rs`).
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--hide-scrollbars",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding",
    "--disable-hang-monitor",
    "--disable-ipc-flooding-protection",
    "--disable-popup-blocking",
    "--disable-prompt-on-repost",
    "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication",
    "--metrics-recording-only",
    "--password-store=basic",
    "--use-mock-keychain",
    "--force-color-profile=srgb",
    // Every connection goes through the egress proxy (`kiln-egress`, whose flags come with it):
    // nothing is resolved on the side.
    "--dns-prefetch-disable",
    "--disable-quic",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
];

/// Whether `chrome` is Chromium's headless shell (Debian's `chromium-headless-shell`, Puppeteer's
/// `chrome-headless-shell`), which is headless by nature, rather than the full browser, which has
/// to be asked (`--headless=new`). The shell is what Kiln runs by default: it has no browser UI to
/// set up, and the full browser spends about 0.7 CPU-seconds of renderer work on every new browser
/// context (its tab strip and the like), which is what a render costs (ARCHITECTURE.md, "The
/// browser").
pub fn is_headless_shell(chrome: &Path) -> bool {
    chrome
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.contains("headless-shell") || name.contains("headless_shell"))
}

/// How long to wait after SIGKILL before declaring that the group could not be taken down.
const KILL_WAIT: Duration = Duration::from_secs(3);

/// The kernel's name (`comm`, 15 bytes at most) of the processes that escape a browser's group:
/// `chrome_crashpad_handler`, cut short.
const ESCAPEE_NAME: &str = "chrome_crashpad";

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("could not create a profile directory in {dir}: {source}")]
    Profile {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("could not start {path}: {source}")]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "chromium did not announce its DevTools address within {timeout:?}; its last output: {stderr}"
    )]
    NoDevTools { timeout: Duration, stderr: String },
    #[error("chromium exited during start-up; its last output: {stderr}")]
    Exited { stderr: String },
}

#[derive(Debug, thiserror::Error)]
#[error("{remaining} chromium process(es) ({what}) were still present {KILL_WAIT:?} after SIGKILL")]
pub struct TerminateError {
    what: String,
    remaining: usize,
}

/// A running Chromium process group.
#[derive(Debug)]
pub struct ChromeProcess {
    /// The main process's pid, which is also the group's id.
    pgid: Pid,
    /// Cancelled once the main process has exited and been reaped.
    exited: CancellationToken,
    /// The profile directory's path, which every process of this browser has on its command line.
    marker: String,
    /// Processes of this browser outside its process group (Crashpad's handlers).
    escapees: Mutex<BTreeSet<i32>>,
    /// Set once [`terminate`](Self::terminate) has seen every process go.
    terminated: AtomicBool,
    profile: Mutex<Option<TempDir>>,
    /// The profile's lock, held while this browser is ours.
    _lock: Flock<std::fs::File>,
}

/// The file in each profile directory that its worker holds locked.
const PROFILE_LOCK: &str = "kiln-worker.lock";
/// A profile directory without its lock file is taken for one being created, unless it is older.
const UNLOCKED_PROFILE_GRACE: Duration = Duration::from_secs(60);
/// How long the processes of an orphaned browser, once killed, have to disappear before its profile
/// is deleted anyway.
const ORPHAN_EXIT_WAIT: Duration = Duration::from_secs(2);

/// Kills the browsers a dead worker left behind under `profile_root` and deletes their profiles.
/// A profile is orphaned when nobody holds its lock: several workers may share the directory, and
/// a live worker's browsers are never touched. Returns how many orphaned profiles were cleared.
pub fn sweep_orphans(profile_root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(profile_root) else {
        return 0;
    };
    let mut cleared = 0;
    for entry in entries.filter_map(Result::ok) {
        let dir = entry.path();
        let is_profile = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with("kiln-chromium-"));
        if !is_profile || !dir.is_dir() {
            continue;
        }
        let orphaned = match std::fs::File::open(dir.join(PROFILE_LOCK)) {
            Ok(file) => Flock::lock(file, FlockArg::LockExclusiveNonblock).is_ok(),
            Err(_) => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age > UNLOCKED_PROFILE_GRACE),
        };
        if !orphaned {
            continue;
        }
        let marker = dir.display().to_string();
        let pids = processes_mentioning(&marker);
        for pid in &pids {
            let _ = nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        // A killed browser's processes may write into the profile until they are gone: wait for
        // them (briefly) before deleting it, and delete again if a file appeared meanwhile.
        let deadline = std::time::Instant::now() + ORPHAN_EXIT_WAIT;
        while !processes_mentioning(&marker).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut removed = std::fs::remove_dir_all(&dir);
        for _ in 0..5 {
            if removed.is_ok() || !dir.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
            removed = std::fs::remove_dir_all(&dir);
        }
        if let Err(error) = removed {
            tracing::warn!(profile = %marker, %error, "could not delete an orphaned browser profile");
        }
        tracing::warn!(profile = %marker, processes = pids.len(), "killed the browser a dead worker left behind");
        cleared += 1;
    }
    cleared
}

/// Makes this process the reaper of its orphaned descendants. Chromium's helpers (zygotes,
/// renderers, utilities) outlive the main process for a moment when it is killed; without this
/// they would be handed to PID 1, which in a container is often the worker itself or an init that
/// never reaps, and linger as zombies.
pub fn become_subreaper() {
    #[cfg(target_os = "linux")]
    if let Err(error) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(%error, "could not become a child subreaper; orphaned chromium processes may linger as zombies");
    }
}

impl ChromeProcess {
    /// Starts Chromium and returns it with its DevTools WebSocket address.
    pub async fn launch(
        chrome: &Path,
        profile_root: &Path,
        extra_args: &[String],
        timeout: Duration,
    ) -> Result<(ChromeProcess, String), LaunchError> {
        let profile = tempfile::Builder::new()
            .prefix("kiln-chromium-")
            .tempdir_in(profile_root)
            .map_err(|source| LaunchError::Profile {
                dir: profile_root.to_owned(),
                source,
            })?;
        // Held for as long as this browser is ours: a worker that dies without cleaning up (SIGKILL,
        // OOM) releases it with its last breath, which is how the next worker knows the browser is
        // an orphan (see `sweep_orphans`). The descriptor is close-on-exec, so Chromium does not
        // inherit it. The file is locked under a name the sweep ignores and only then renamed into
        // place (atomically, the lock going with the file): were it created under its own name, a
        // worker starting at the same moment could find it unlocked in between, take the browser
        // being born for an orphan and delete its profile.
        let profile_error = |source: std::io::Error| LaunchError::Profile {
            dir: profile.path().to_owned(),
            source,
        };
        let staged = profile.path().join(format!("{PROFILE_LOCK}.new"));
        let file = std::fs::File::create(&staged).map_err(profile_error)?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| profile_error(errno.into()))?;
        std::fs::rename(&staged, profile.path().join(PROFILE_LOCK)).map_err(profile_error)?;

        let mut command = tokio::process::Command::new(chrome);
        if !is_headless_shell(chrome) {
            command.arg("--headless=new");
        }
        command
            .args(CHROME_ARGS)
            .args(extra_args)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            // Crashpad keeps its database under the configuration directory; see the module docs.
            .env("XDG_CONFIG_HOME", profile.path().join("config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            // A last resort if the worker drops the process without terminating it.
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| LaunchError::Spawn {
            path: chrome.to_owned(),
            source,
        })?;
        let stderr = child.stderr.take();
        let Some(pid) = child.id() else {
            return Err(LaunchError::Exited {
                stderr: String::new(),
            });
        };
        let pgid = Pid::from_raw(pid as i32);

        let exited = CancellationToken::new();
        tokio::spawn({
            let exited = exited.clone();
            async move {
                match child.wait().await {
                    Ok(status) => tracing::debug!(chromium.pid = pid, %status, "chromium exited"),
                    Err(error) => {
                        tracing::warn!(chromium.pid = pid, %error, "could not wait for chromium")
                    }
                }
                exited.cancel();
            }
        });
        let marker = profile.path().display().to_string();
        let process = ChromeProcess {
            pgid,
            exited,
            marker,
            escapees: Mutex::new(BTreeSet::new()),
            terminated: AtomicBool::new(false),
            profile: Mutex::new(Some(profile)),
            _lock: lock,
        };

        let Some(stderr) = stderr else {
            process.terminate(Duration::from_secs(1)).await.ok();
            return Err(LaunchError::Exited {
                stderr: "no stderr pipe".into(),
            });
        };
        let mut lines = BufReader::new(stderr).lines();
        let mut tail: Vec<String> = Vec::new();
        let found = tokio::time::timeout(timeout, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = devtools_url(&line) {
                    return Some(url);
                }
                if tail.len() == 10 {
                    tail.remove(0);
                }
                tail.push(line);
            }
            None
        })
        .await;

        match found {
            Ok(Some(url)) => {
                // Crashpad has started by now; remember it while its command line still says whose
                // it is (a zombie's does not).
                process.note_escapees();
                // Chromium keeps writing to stderr; drain it so that it never blocks on a full pipe.
                tokio::spawn(async move {
                    while let Ok(Some(line)) = lines.next_line().await {
                        tracing::trace!(target: "kiln_worker::chromium", pid, stderr = %line);
                    }
                });
                Ok((process, url))
            }
            outcome => {
                if let Err(error) = process.terminate(Duration::from_secs(1)).await {
                    tracing::error!(%error, "could not clean up after a failed chromium start");
                }
                process.remove_profile().await;
                let stderr = tail.join("\n");
                Err(match outcome {
                    Err(_) => LaunchError::NoDevTools { timeout, stderr },
                    _ => LaunchError::Exited { stderr },
                })
            }
        }
    }

    /// The main process's pid.
    pub fn pid(&self) -> u32 {
        self.pgid.as_raw() as u32
    }

    /// A token cancelled once the main process has exited.
    pub fn exited(&self) -> CancellationToken {
        self.exited.clone()
    }

    /// Takes the whole process group down: SIGTERM, then SIGKILL if anything is left after `grace`.
    /// Returns once no process of the group exists any more (all reaped), or with an error if some
    /// did not go away even after SIGKILL.
    pub async fn terminate(&self, grace: Duration) -> Result<(), TerminateError> {
        self.note_escapees();
        self.terminate_group(grace).await?;
        self.await_escapees(grace).await?;
        self.terminated.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn terminate_group(&self, grace: Duration) -> Result<(), TerminateError> {
        self.signal(Signal::SIGTERM);
        let started = Instant::now();
        let kill_at = started + grace;
        let give_up_at = kill_at + KILL_WAIT;
        let mut killed = false;
        loop {
            // Only once the main process is reaped (by its own waiter) may the rest of the group be
            // reaped here, or its exit status would be stolen from that waiter.
            if self.exited.is_cancelled() {
                self.reap_group();
            }
            // Signal 0 only checks: ESRCH means no process of the group is left, zombies included.
            if let Err(Errno::ESRCH) = killpg(self.pgid, None) {
                return Ok(());
            }
            let now = Instant::now();
            if !killed && now >= kill_at {
                tracing::warn!(
                    chromium.pid = self.pid(),
                    "chromium ignored SIGTERM; sending SIGKILL"
                );
                self.signal(Signal::SIGKILL);
                killed = true;
            }
            if now >= give_up_at {
                return Err(TerminateError {
                    what: format!("process group {}", self.pgid),
                    remaining: group_members(self.pgid.as_raw()),
                });
            }
            // No event says "the group is empty", so poll it briefly against the deadline; the main
            // process's exit is an event, though, and wakes this loop at once.
            tokio::select! {
                _ = self.exited.cancelled(), if !self.exited.is_cancelled() => {}
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    }

    /// Waits for the processes outside the group to go (they follow the browser by themselves),
    /// reaping them, and kills any that are still there after `grace`.
    async fn await_escapees(&self, grace: Duration) -> Result<(), TerminateError> {
        let kill_at = Instant::now() + grace;
        let give_up_at = kill_at + KILL_WAIT;
        let mut killed = false;
        loop {
            self.note_escapees();
            let remaining: Vec<i32> = {
                let mut escapees = lock(&self.escapees);
                escapees.extend(exited_helpers());
                escapees.retain(|pid| !reap_one(*pid));
                escapees.iter().copied().collect()
            };
            if remaining.is_empty() {
                return Ok(());
            }
            let now = Instant::now();
            if !killed && now >= kill_at {
                for pid in &remaining {
                    // Only a process that is still this browser's; a zombie needs no signal.
                    if command_line(*pid).is_some_and(|args| args.contains(&self.marker)) {
                        tracing::warn!(
                            pid,
                            "a chromium helper outlived the browser; sending SIGKILL"
                        );
                        let _ = nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGKILL);
                    }
                }
                killed = true;
            }
            if now >= give_up_at {
                return Err(TerminateError {
                    what: format!("helpers {remaining:?}"),
                    remaining: remaining.len(),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Records the live processes that carry this browser's profile on their command line but are
    /// not in its group.
    fn note_escapees(&self) {
        let found: Vec<i32> = processes_mentioning(&self.marker)
            .into_iter()
            .filter(|pid| process_group(*pid) != Some(self.pgid.as_raw()))
            .collect();
        lock(&self.escapees).extend(found);
    }

    /// Deletes the profile directory. Call after [`terminate`](Self::terminate).
    pub async fn remove_profile(&self) {
        let profile = lock(&self.profile).take();
        if let Some(profile) = profile {
            let path = profile.path().to_owned();
            match tokio::task::spawn_blocking(move || profile.close()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(path = %path.display(), %error, "could not delete a chromium profile")
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "could not delete a chromium profile")
                }
            }
        }
    }

    fn signal(&self, signal: Signal) {
        match killpg(self.pgid, signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(error) => {
                tracing::warn!(chromium.pid = self.pid(), %signal, %error, "could not signal chromium")
            }
        }
    }

    /// Reaps every exited member of the group that is our child (the subreaper flag makes orphaned
    /// members our children).
    fn reap_group(&self) {
        let group = Pid::from_raw(-self.pgid.as_raw());
        loop {
            match waitpid(group, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    }
}

/// The safety net for a process that was never terminated (the worker's runtime was dropped, say,
/// or a task panicked): kill everything at once and reap what can be reaped in a moment, so that
/// nothing is left running or handed to an init that may never reap it. The profile directory goes
/// with the `TempDir` right after.
impl Drop for ChromeProcess {
    fn drop(&mut self) {
        if self.terminated.load(Ordering::Relaxed) {
            return;
        }
        self.note_escapees();
        let _ = killpg(self.pgid, Signal::SIGKILL);
        let mut escapees: BTreeSet<i32> = lock(&self.escapees).clone();
        for pid in &escapees {
            if command_line(*pid).is_some_and(|args| args.contains(&self.marker)) {
                let _ = nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
        }
        // Nothing awaits the main process any more either, so it is reaped here with the group.
        let deadline = std::time::Instant::now() + Duration::from_millis(500);
        loop {
            self.reap_group();
            escapees.extend(exited_helpers());
            escapees.retain(|pid| !reap_one(*pid));
            let helpers_gone = escapees.is_empty();
            if helpers_gone && matches!(killpg(self.pgid, None), Err(Errno::ESRCH)) {
                return;
            }
            if std::time::Instant::now() >= deadline {
                tracing::warn!(
                    chromium.pid = self.pid(),
                    "chromium processes may outlive this worker"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reaps `pid` if it is an exited child of ours; true once the process no longer exists.
fn reap_one(pid: i32) -> bool {
    match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) => false,
        Ok(_) => true,
        // Not our child (or already reaped): gone unless /proc still lists it.
        Err(_) => !Path::new(&format!("/proc/{pid}")).exists(),
    }
}

/// A process's command line, joined with spaces (`None` once it is gone or a zombie).
fn command_line(pid: i32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    (!raw.is_empty()).then(|| String::from_utf8_lossy(&raw).replace('\0', " "))
}

/// Live processes whose command line mentions `marker`.
fn processes_mentioning(marker: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| command_line(*pid).is_some_and(|args| args.contains(marker)))
        .collect()
}

/// What `/proc/<pid>/stat` says of a process that matters here.
struct Stat {
    /// The kernel's name for it: its executable's file name, cut to 15 bytes. A zombie keeps it.
    name: String,
    /// `R`unning, `S`leeping, `Z`ombie, ...
    state: char,
    parent: i32,
    group: i32,
}

/// Reads `/proc/<pid>/stat`: `pid (name) state ppid pgrp ...`, the name possibly holding spaces
/// and parentheses itself.
fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = text.rsplit_once(')')?;
    let (_, name) = head.split_once('(')?;
    let mut fields = rest.split_whitespace();
    Some(Stat {
        name: name.to_owned(),
        state: fields.next()?.chars().next()?,
        parent: fields.next()?.parse().ok()?,
        group: fields.next()?.parse().ok()?,
    })
}

fn process_group(pid: i32) -> Option<i32> {
    stat(pid).map(|stat| stat.group)
}

/// Escaped Chromium helpers on their way out or already gone that this worker has to reap: its
/// children (adopted: the subreaper flag) named like Crashpad's handler whose command line is
/// already gone, so that [`ChromeProcess::note_escapees`] cannot have seen them if they exited
/// first. Whichever browser they served, they are exiting, and reaping them is all there is to do;
/// a live helper still has its command line and is left to its own browser.
fn exited_helpers() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let us = std::process::id() as i32;
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            stat(*pid).is_some_and(|stat| {
                stat.parent == us
                    && stat.name == ESCAPEE_NAME
                    && (stat.state == 'Z' || command_line(*pid).is_none())
            })
        })
        .collect()
}

/// Extracts the address from Chromium's `DevTools listening on ws://...` line.
fn devtools_url(line: &str) -> Option<String> {
    let (_, url) = line.rsplit_once("listening on ")?;
    let url = url.trim();
    (url.starts_with("ws://") && url.contains("/devtools/browser/")).then(|| url.to_owned())
}

/// The memory the processes of group `pgid` use: the sum of their proportional set sizes (shared
/// pages split between the processes sharing them), falling back to resident sizes where the
/// kernel does not offer `smaps_rollup`.
pub fn group_memory_bytes(pgid: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| process_group(*pid) == Some(pgid as i32))
        .map(|pid| {
            let field = |file: &str, name: &str| -> Option<u64> {
                let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
                let line = text.lines().find(|l| l.starts_with(name))?;
                let kb: u64 = line[name.len()..]
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()?;
                Some(kb * 1024)
            };
            field("smaps_rollup", "Pss:")
                .or_else(|| field("status", "VmRSS:"))
                .unwrap_or(0)
        })
        .sum()
}

/// How many processes belong to group `pgid`, for error messages.
fn group_members(pgid: i32) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| process_group(*pid) == Some(pgid))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for Chromium whose Crashpad-like helper escapes the group (a new session, its
    /// parent gone) only after the DevTools line, like Crashpad's self-monitor on a busy machine,
    /// and exits by itself once the browser has gone.
    const LATE_HELPER_BROWSER: &str = r#"#!/bin/bash
for arg; do case "$arg" in --user-data-dir=*) profile="${arg#*=}";; esac; done
echo "DevTools listening on ws://127.0.0.1:1/devtools/browser/fake" >&2
sleep 0.3
mkfifo "$profile/tick"
ln -s /bin/bash "$profile/chrome_crashpad_handler"
setsid -f "$profile/chrome_crashpad_handler" -c \
  'exec 9<>"$1"; while kill -0 "$2" 2>/dev/null; do read -t 0.05 -u 9; done' \
  chrome_crashpad_handler "$profile/tick" $$
exec sleep 1000
"#;

    fn wait_for<T>(what: &str, mut found: impl FnMut() -> Option<T>) -> T {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(value) = found() {
                return value;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what} took over 10 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The full runs once caught a Crashpad handler left a zombie: it had started after the browser
    /// was noted, and exited with the browser before `terminate` looked, leaving no command line to
    /// know it by.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_helper_that_escaped_unseen_and_exited_first_is_reaped() {
        become_subreaper();
        let dir = tempfile::tempdir().unwrap();
        let browser = dir.path().join("chromium");
        std::fs::write(&browser, LATE_HELPER_BROWSER).unwrap();
        std::fs::set_permissions(
            &browser,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let profiles = dir.path().join("profiles");
        std::fs::create_dir(&profiles).unwrap();
        let (process, _) = ChromeProcess::launch(&browser, &profiles, &[], Duration::from_secs(10))
            .await
            .unwrap();
        assert!(lock(&process.escapees).is_empty(), "the helper came late");

        let us = std::process::id() as i32;
        let helper = wait_for("the helper's start", || {
            processes_mentioning(&process.marker)
                .into_iter()
                .find(|pid| {
                    stat(*pid).is_some_and(|stat| stat.name == ESCAPEE_NAME && stat.parent == us)
                })
        });
        nix::sys::signal::kill(Pid::from_raw(process.pid() as i32), Signal::SIGKILL).unwrap();
        wait_for("the helper's exit", || {
            stat(helper)
                .is_some_and(|stat| stat.state == 'Z')
                .then_some(())
        });

        process.terminate(Duration::from_secs(1)).await.unwrap();
        assert!(
            stat(helper).is_none(),
            "the helper is still there: {:?}",
            stat(helper).map(|stat| (stat.name, stat.state, stat.parent, stat.group))
        );
        process.remove_profile().await;
    }

    #[test]
    fn knows_the_headless_shell_by_its_name() {
        let cases = [
            ("/usr/bin/chromium-headless-shell", true),
            ("/usr/lib/chromium/chromium-headless-shell", true),
            (
                "/opt/chrome-headless-shell-linux64/chrome-headless-shell",
                true,
            ),
            ("/srv/headless_shell", true),
            ("/usr/bin/chromium", false),
            ("/usr/bin/google-chrome", false),
            ("/opt/headless-shell/chrome", false),
        ];
        for (path, expected) in cases {
            assert_eq!(is_headless_shell(Path::new(path)), expected, "{path}");
        }
    }

    #[test]
    fn finds_the_devtools_address() {
        let cases = [
            (
                "DevTools listening on ws://127.0.0.1:33369/devtools/browser/cbc0995c",
                Some("ws://127.0.0.1:33369/devtools/browser/cbc0995c"),
            ),
            (
                "\nDevTools listening on ws://127.0.0.1:1/devtools/browser/x  \n",
                Some("ws://127.0.0.1:1/devtools/browser/x"),
            ),
            ("[1:2:ERROR:bus.cc(405)] Failed to connect to the bus", None),
            ("listening on http://127.0.0.1:9222", None),
            ("", None),
        ];
        for (line, expected) in cases {
            assert_eq!(devtools_url(line).as_deref(), expected, "{line:?}");
        }
    }
}
