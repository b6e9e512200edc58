//! Talking to the privileged helper on the system bus. The helper asks polkit for every
//! change; errors come back as translated sentences, never raw D-Bus names.
//!
//! The helper changes the host root it serves: `/` on a real system. When the app examines
//! a copy of a host (`--root DIR`), a change is sent only to a helper whose `Root` property
//! names that same directory (a helper started with `--root DIR` for tests); any other helper
//! is not asked to change anything. The helper is only contacted when a change is asked for,
//! never at start-up.

use std::future::Future;
use std::path::{Path, PathBuf};

use futures_util::future::{self, Either};
use futures_util::{FutureExt, StreamExt};
use passthrough_core::dbus::{user_message, Helper1Proxy, Progress};
use passthrough_core::HostRoot;
use zbus::proxy::CacheProperties;

/// Why a change did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The helper serves another host root than the app's (the app examines a copy of a
    /// host): nothing was sent to it.
    OtherRoot { served: String },
    /// The helper could not be reached or asked, so nothing was sent to it: the sentence says
    /// why.
    NotSent(String),
    /// The helper refused or failed: the sentence says why (the helper rolls back what a
    /// failed change had done).
    Refused(String),
}

impl Failure {
    /// The sentence for a change that did not happen.
    pub fn message(&self) -> String {
        match self {
            Self::OtherRoot { .. } => gettextrs::gettext(
                "This is a copy of another computer: the changes are shown but cannot be applied here.",
            ),
            Self::NotSent(message) => passthrough_core::i18n::gettext_f(
                "{error} Nothing was changed.",
                &[("error", message)],
            ),
            Self::Refused(message) => message.clone(),
        }
    }
}

async fn proxy() -> Result<Helper1Proxy<'static>, Failure> {
    let not_sent = |e: zbus::Error| Failure::NotSent(user_message(&e));
    let connection = zbus::Connection::system().await.map_err(not_sent)?;
    // No property cache: it would subscribe to the helper's signals for nothing.
    Helper1Proxy::builder(&connection)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(not_sent)
}

/// The helper, once it is known to serve `root` (the app's host root, canonical).
async fn proxy_for(root: &Path) -> Result<Helper1Proxy<'static>, Failure> {
    let proxy = proxy().await?;
    if !HostRoot::new(root).is_live() {
        let served = proxy
            .root()
            .await
            .map_err(|e| Failure::NotSent(user_message(&e)))?;
        if canonical(Path::new(&served)) != canonical(root) {
            tracing::info!(app = %root.display(), helper = %served, "the helper serves another root: nothing sent");
            return Err(Failure::OtherRoot { served });
        }
    }
    Ok(proxy)
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Runs `call` while passing each `Progress` signal (step, line) to `progress`, including
/// those that arrived just before the reply.
async fn with_progress<T>(
    proxy: &Helper1Proxy<'static>,
    call: impl Future<Output = zbus::Result<T>>,
    progress: impl Fn(&str, &str),
) -> Result<T, Failure> {
    let mut signals = proxy
        .receive_progress()
        .await
        .map_err(|e| Failure::NotSent(user_message(&e)))?;
    let show = |signal: Progress| {
        if let Ok(args) = signal.args() {
            progress(args.step(), args.line());
        }
    };
    let mut call = std::pin::pin!(call);
    let result = loop {
        match future::select(call.as_mut(), signals.next()).await {
            Either::Left((result, _)) => break result,
            Either::Right((Some(signal), _)) => show(signal),
            Either::Right((None, _)) => break call.await,
        }
    };
    // The helper sends its last lines before its reply: they are queued already.
    while let Some(Some(signal)) = signals.next().now_or_never() {
        show(signal);
    }
    result.map_err(|e| Failure::Refused(user_message(&e)))
}

/// Applies a plan (JSON) to the host under `root`; `progress` gets each step and output line
/// as the helper reports them. Returns the transaction's ID.
pub async fn apply(
    root: &Path,
    plan_json: &str,
    progress: impl Fn(&str, &str),
) -> Result<String, Failure> {
    let proxy = proxy_for(root).await?;
    with_progress(&proxy, proxy.apply(plan_json), progress).await
}

/// Rolls back a transaction of the host under `root`, with progress as for [`apply`].
pub async fn rollback(root: &Path, id: &str, progress: impl Fn(&str, &str)) -> Result<(), Failure> {
    let proxy = proxy_for(root).await?;
    with_progress(&proxy, proxy.rollback(id), progress).await
}

/// A log the user may not read (`kind` is `kernel`, or `qemu` with the VM's name), read by
/// the helper after polkit says yes.
pub async fn read_log(root: &Path, kind: &str, vm: &str) -> Result<String, Failure> {
    let proxy = proxy_for(root).await?;
    proxy
        .read_log(kind, vm)
        .await
        .map_err(|e| Failure::Refused(user_message(&e)))
}

/// Asks logind to restart the computer (it asks for authentication when it must).
pub async fn reboot() -> Result<(), String> {
    let connection = zbus::Connection::system()
        .await
        .map_err(|e| user_message(&e))?;
    connection
        .call_method(
            Some("org.freedesktop.login1"),
            "/org/freedesktop/login1",
            Some("org.freedesktop.login1.Manager"),
            "Reboot",
            &(true,),
        )
        .await
        .map(|_| ())
        .map_err(|e| user_message(&e))
}

/// Applies a network change (`NetworkChange` JSON) to the host under `root`, with progress as
/// for [`apply`]; the helper undoes it after `confirm_within` seconds unless
/// [`confirm_network`] keeps it. Returns the transaction's ID.
pub async fn apply_network(
    root: &Path,
    change_json: &str,
    confirm_within: u32,
    progress: impl Fn(&str, &str),
) -> Result<String, Failure> {
    let proxy = proxy_for(root).await?;
    with_progress(
        &proxy,
        proxy.apply_network(change_json, confirm_within),
        progress,
    )
    .await
}

/// Keeps a network change that [`apply_network`] made.
pub async fn confirm_network(root: &Path, id: &str) -> Result<(), Failure> {
    let proxy = proxy_for(root).await?;
    proxy
        .confirm_network(id)
        .await
        .map_err(|e| Failure::Refused(user_message(&e)))
}
