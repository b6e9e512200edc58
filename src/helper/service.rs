//! The `io.github.passthrough.Helper1` object.
//!
//! Every mutating method checks polkit for the caller first, then validates its arguments,
//! then acts, inside a transaction of core's engine; nothing else runs as root on a caller's
//! behalf. Blocking work (scanning the host, writing files, rebuilding the initramfs) runs on
//! zruntime's blocking pool, so the bus connection keeps serving other calls meanwhile, and
//! one transaction at a time runs under `changing`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use passthrough_core::dbus::{
    encode as encode_dto, HelperError, ACTION_CONFIGURE_HOST, ACTION_MANAGE_DEVICES,
    ACTION_READ_LOGS,
};
use passthrough_core::i18n::gettext_f;
use passthrough_core::network::{self, render::NetworkChange};
use passthrough_core::plan::Rendered;
use passthrough_core::plan_render::{render, PlanError};
use passthrough_core::transaction::{self, ApplyError, HostRunner, Progress, TransactionId};
use passthrough_core::{HostReport, HostRoot, ScanOptions};
use zbus::interface;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;

use crate::authority::Authority;
use crate::idle::{Busy, Idle};
use crate::{logs, reset, validate};

/// The helper's one object, served at [`OBJECT_PATH`](passthrough_core::dbus::OBJECT_PATH).
#[derive(Debug)]
pub struct Helper {
    root: HostRoot,
    authority: Authority,
    idle: Idle,
    /// Held while a transaction runs: one change of the host at a time.
    changing: Arc<Mutex<()>>,
}

impl Helper {
    pub fn new(root: HostRoot, authority: Authority, idle: Idle) -> Self {
        Self {
            root,
            authority,
            idle,
            changing: Arc::default(),
        }
    }

    /// The frame of every method that changes the host: polkit `action` for the caller
    /// first; then `job` (which validates, takes the transaction lock and acts) on the
    /// blocking pool, its progress lines forwarded as `Progress` signals meanwhile; the
    /// outcome logged under `method`.
    async fn change_host<T: Send + 'static>(
        &self,
        header: &Header<'_>,
        emitter: &SignalEmitter<'_>,
        method: &str,
        action: &str,
        job: impl FnOnce(
                &HostRoot,
                &Mutex<()>,
                zruntime::mpmc::Sender<ProgressLine>,
            ) -> Result<T, HelperError>
            + Send
            + 'static,
    ) -> Result<T, HelperError> {
        let busy = self.idle.busy();
        let caller = caller(header);
        if let Err(e) = self.authority.check(header, action).await {
            log_outcome::<()>(method, &caller, &Err(e.clone()));
            return Err(e);
        }
        let root = self.root.clone();
        let changing = self.changing.clone();
        let (tx, rx) = zruntime::mpmc::unbounded::<ProgressLine>();
        let work = zruntime::unblock(move || {
            let _busy = busy;
            job(&root, &changing, tx)
        });
        forward_progress(emitter, rx).await;
        let result = work.await;
        log_outcome(method, &caller, &result);
        result
    }

    /// The frame of every method that only reads and needs no privilege: `job` on the
    /// blocking pool, the outcome logged under `method`.
    async fn read_only<T: Send + 'static>(
        &self,
        header: &Header<'_>,
        method: &str,
        job: impl FnOnce(&HostRoot) -> Result<T, HelperError> + Send + 'static,
    ) -> Result<T, HelperError> {
        let busy = self.idle.busy();
        let caller = caller(header);
        let root = self.root.clone();
        let result = zruntime::unblock(move || {
            let _busy = busy;
            job(&root)
        })
        .await;
        log_outcome(method, &caller, &result);
        result
    }

    /// The host root this helper reads and changes (`/` on a real system).
    pub fn root(&self) -> &HostRoot {
        &self.root
    }

    /// Starts finishing the rollback of transactions a previous helper left interrupted (it
    /// died, or the machine lost power). It holds the transaction lock, so `Apply` and
    /// `Rollback` wait for it, while the helper already answers everything else (D-Bus
    /// activation must not wait for an initramfs rebuild).
    pub fn start_recovery(&self) {
        let root = self.root.clone();
        let changing = self.changing.clone();
        let busy = self.idle.busy();
        // The work runs to its end on the pool; nothing needs its result.
        drop(zruntime::unblock(move || {
            let _busy = busy;
            let _lock = lock(&changing);
            recover(&root);
        }));
        // Network changes a previous helper applied and nobody confirmed yet: undone at
        // their deadline (at once when it has passed), unless confirmed before.
        match transaction::awaiting_confirmation(&self.root) {
            Ok(waiting) => {
                for (id, deadline) in waiting {
                    undo_unless_confirmed(
                        self.root.clone(),
                        self.changing.clone(),
                        self.idle.busy(),
                        id,
                        deadline,
                    );
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot list network changes to confirm"),
        }
    }
}

fn recover(root: &HostRoot) {
    match transaction::recover(root, &HostRunner::new(root.clone())) {
        Ok(ids) if ids.is_empty() => {}
        Ok(ids) => {
            let ids: Vec<&str> = ids.iter().map(TransactionId::as_str).collect();
            tracing::warn!(transactions = ?ids, "rolled back interrupted transactions");
        }
        Err(e) => tracing::error!(error = %e, "cannot recover interrupted transactions"),
    }
}

/// Undoes transaction `id` at `deadline` (Unix time) unless it is confirmed before (its
/// confirmation mark disappears). Runs on its own thread and keeps the helper alive
/// (`busy`) until then: a network change that cut the user off is undone even though no
/// one calls the helper any more.
fn undo_unless_confirmed(
    root: HostRoot,
    changing: Arc<Mutex<()>>,
    busy: Busy,
    id: TransactionId,
    deadline: u64,
) {
    std::thread::spawn(move || {
        let _busy = busy;
        while transaction::confirmation_deadline(&root, &id).is_some()
            && transaction::unix_now() < deadline
        {
            std::thread::sleep(Duration::from_millis(200));
        }
        let _lock = lock(&changing);
        if transaction::confirmation_deadline(&root, &id).is_none() {
            tracing::info!(transaction = %id, "network change kept");
            return;
        }
        tracing::warn!(transaction = %id, "network change not confirmed in time: undoing it");
        let runner = HostRunner::new(root.clone());
        match transaction::rollback_forced(&root, &id, &runner, &mut |_| {}) {
            Ok(()) => tracing::info!(transaction = %id, "network change undone"),
            Err(e) => {
                tracing::error!(transaction = %id, error = %e, "cannot undo the network change")
            }
        }
    });
}

/// Scans the host's network, validates the change against it, renders it, and checks the
/// result with `netplan generate` and against the files the helper may write.
fn prepare_network(
    root: &HostRoot,
    change_json: &str,
    confirm_within: Option<u32>,
) -> Result<Rendered, HelperError> {
    let change: NetworkChange = validate::network_change(change_json, confirm_within)?;
    let report = network::scan(root);
    let rendered =
        network::render::render(root, &report, &change).map_err(HelperError::InvalidArgument)?;
    network::render::check_with_netplan(root, &rendered).map_err(HelperError::InvalidArgument)?;
    validate::rendered_paths(&rendered)?;
    Ok(rendered)
}

/// One line of progress for the `Progress` signal: transaction, step, line.
type ProgressLine = (String, String, String);

#[interface(name = "io.github.passthrough.Helper1")]
impl Helper {
    /// The `Rendered` JSON of a plan on this host: the exact file changes and commands.
    /// No privilege: it reads what any user can read and changes nothing.
    async fn preview(
        &self,
        #[zbus(header)] header: Header<'_>,
        plan: String,
    ) -> Result<String, HelperError> {
        self.read_only(&header, "Preview", move |root| {
            let (_, rendered) = prepare(root, &plan)?;
            encode(&rendered)
        })
        .await
    }

    /// Applies a plan as one transaction and returns its ID. polkit `configure-host`.
    async fn apply(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        plan: String,
    ) -> Result<String, HelperError> {
        self.change_host(
            &header,
            &emitter,
            "Apply",
            ACTION_CONFIGURE_HOST,
            move |root, changing, tx| {
                // Rendered under the lock, so no other transaction changes the files between
                // rendering and writing.
                let _lock = lock(changing);
                let (_, rendered) = prepare(root, &plan)?;
                if rendered.is_empty() {
                    return Err(HelperError::InvalidArgument(gettext_f(
                        "The system already matches this plan: there is nothing to apply.",
                        &[],
                    )));
                }
                let runner = HostRunner::new(root.clone());
                let mut reporter = Reporter::new(None, tx);
                transaction::apply(root, &rendered, &runner, &mut |p| reporter.report(p))
                    .map(|id| id.to_string())
                    .map_err(apply_error)
            },
        )
        .await
    }

    /// Restores the files of a transaction byte for byte and runs its commands again.
    /// polkit `configure-host`.
    async fn rollback(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        transaction: String,
    ) -> Result<(), HelperError> {
        self.change_host(
            &header,
            &emitter,
            "Rollback",
            ACTION_CONFIGURE_HOST,
            move |root, changing, tx| {
                let id = transaction_id(&transaction)?;
                let _lock = lock(changing);
                let runner = HostRunner::new(root.clone());
                let mut reporter = Reporter::new(Some(id.to_string()), tx);
                transaction::rollback(root, &id, &runner, &mut |p| reporter.report(p))
                    .map_err(apply_error)
            },
        )
        .await
    }

    /// The boot-GPU fix: removes the graphics card at `address` from the PCI bus and rescans
    /// the bus, so that a VM can use the card the computer started on. polkit
    /// `manage-devices`; the address must be a graphics card of this host that no host driver
    /// uses (vfio-pci or none).
    async fn reset_gpu(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        address: String,
    ) -> Result<(), HelperError> {
        self.change_host(
            &header,
            &emitter,
            "ResetGpu",
            ACTION_MANAGE_DEVICES,
            move |root, changing, _progress| {
                // Syntax first: a malformed address costs no host scan.
                validate::address_syntax(&address)?;
                let report = HostReport::scan(root, &ScanOptions::default());
                let address = validate::resettable_gpu(&address, &report)?;
                // Not while a transaction rebuilds the initramfs, nor two resets at once.
                let _lock = lock(changing);
                tracing::info!(%address, "resetting the graphics card");
                reset::reset(root, &address)
            },
        )
        .await
    }

    /// The end (at most 1 MiB, from a line start) of a log only root may read: `kind`
    /// `kernel` (the current boot's kernel log; `vm` empty) or `qemu` (the QEMU log of the
    /// libvirt domain named `vm`). polkit `read-logs`; changes nothing, so it runs in the
    /// same frame without the transaction lock.
    async fn read_log(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        kind: String,
        vm: String,
    ) -> Result<String, HelperError> {
        self.change_host(
            &header,
            &emitter,
            "ReadLog",
            ACTION_READ_LOGS,
            move |root, _changing, _progress| {
                let request = validate::log_request(&kind, &vm)?;
                tracing::info!(?request, "reading a log");
                logs::read(root, &request)
            },
        )
        .await
    }

    /// The `Rendered` JSON of a network change (`NetworkChange` JSON: make or remove a
    /// bridge) on this host, checked by `netplan generate`. No privilege: it reads what any
    /// user can read and changes nothing.
    async fn preview_network(
        &self,
        #[zbus(header)] header: Header<'_>,
        change: String,
    ) -> Result<String, HelperError> {
        self.read_only(&header, "PreviewNetwork", move |root| {
            encode(&prepare_network(root, &change, None)?)
        })
        .await
    }

    /// Applies a network change as one transaction and returns its ID; it is undone
    /// `confirm_within` seconds later unless `ConfirmNetwork` keeps it (as `netplan try`
    /// does), so a change that cut the user off undoes itself. polkit `configure-host`.
    async fn apply_network(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        change: String,
        confirm_within: u32,
    ) -> Result<String, HelperError> {
        let idle = self.idle.clone();
        let shared = self.changing.clone();
        self.change_host(
            &header,
            &emitter,
            "ApplyNetwork",
            ACTION_CONFIGURE_HOST,
            move |root, changing, tx| {
                let guard = lock(changing);
                let rendered = prepare_network(root, &change, Some(confirm_within))?;
                let runner = HostRunner::new(root.clone());
                let mut reporter = Reporter::new(None, tx);
                let id = transaction::apply(root, &rendered, &runner, &mut |p| reporter.report(p))
                    .map_err(apply_error)?;
                let deadline = transaction::unix_now() + u64::from(confirm_within);
                if let Err(e) = transaction::await_confirmation(root, &id, deadline) {
                    // Without the mark nothing would undo it: undo it now.
                    let _ = transaction::rollback_forced(root, &id, &runner, &mut |_| {});
                    return Err(apply_error(e));
                }
                drop(guard);
                undo_unless_confirmed(root.clone(), shared, idle.busy(), id.clone(), deadline);
                Ok(id.to_string())
            },
        )
        .await
    }

    /// Keeps a network change that `ApplyNetwork` applied; fails when it was already undone
    /// (too late) or never waited. polkit `configure-host`.
    async fn confirm_network(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        transaction: String,
    ) -> Result<(), HelperError> {
        self.change_host(
            &header,
            &emitter,
            "ConfirmNetwork",
            ACTION_CONFIGURE_HOST,
            move |root, changing, _progress| {
                let id = transaction_id(&transaction)?;
                let _lock = lock(changing);
                if transaction::confirm(root, &id).map_err(apply_error)? {
                    Ok(())
                } else {
                    Err(HelperError::Failed(gettext_f(
                        "The network change {id} is no longer waiting to be kept: it was undone, or kept already.",
                        &[("id", id.as_str())],
                    )))
                }
            },
        )
        .await
    }

    /// JSON list of the journalled transactions, newest first. No privilege.
    async fn transactions(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<String, HelperError> {
        self.read_only(&header, "Transactions", |root| {
            encode(&transaction::list(root).map_err(apply_error)?)
        })
        .await
    }

    /// A step starting (empty `line`) or a line of command output of a running transaction.
    #[zbus(signal)]
    async fn progress(
        emitter: &SignalEmitter<'_>,
        transaction: &str,
        step: &str,
        line: &str,
    ) -> zbus::Result<()>;

    /// The helper's version (the package version).
    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }

    /// The host root this helper reads and changes: `/` on a real system, the `--root`
    /// directory in tests. A client working on a copy of a host (the app's `--root`) sends
    /// its plan only to a helper that serves that same copy. No privilege.
    #[zbus(property(emits_changed_signal = "const"), name = "Root")]
    fn root_property(&self) -> String {
        self.root.base().to_string_lossy().into_owned()
    }
}

/// Scans the host, validates the plan against it, renders it, and checks that the result
/// only touches the files the helper is meant to write.
fn prepare(root: &HostRoot, plan_json: &str) -> Result<(HostReport, Rendered), HelperError> {
    // Syntax first: a malformed plan costs no host scan.
    validate::plan_syntax(plan_json)?;
    let report = HostReport::scan(root, &ScanOptions::default());
    let plan = validate::plan(plan_json, &report)?;
    let rendered = render(root, &report, &plan).map_err(plan_error)?;
    validate::rendered_paths(&rendered)?;
    Ok((report, rendered))
}

/// A transaction ID argument, checked.
fn transaction_id(text: &str) -> Result<TransactionId, HelperError> {
    TransactionId::parse(validate::transaction_id(text)?).map_err(apply_error)
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, HelperError> {
    encode_dto(value).map_err(|e| HelperError::Failed(e.to_string()))
}

fn lock(changing: &Mutex<()>) -> MutexGuard<'_, ()> {
    // A panic while holding the lock leaves nothing half-done that the lock protects: the
    // journal on disk is the state, so a poisoned lock is simply taken over.
    changing
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The caller as logs show it: its unique bus name.
fn caller(header: &Header<'_>) -> String {
    header
        .sender()
        .map(|s| s.to_string())
        .unwrap_or_else(|| "?".to_owned())
}

fn log_outcome<T>(method: &str, caller: &str, result: &Result<T, HelperError>) {
    match result {
        Ok(_) => tracing::info!(%method, %caller, "done"),
        Err(e) => tracing::warn!(%method, %caller, error = %e, "refused or failed"),
    }
}

fn plan_error(e: PlanError) -> HelperError {
    let message = e.message();
    match e {
        PlanError::UnknownDevice(_)
        | PlanError::NotAGpu(_)
        | PlanError::ReserveAndRelease(_)
        | PlanError::SharedGroup { .. }
        | PlanError::Trial(_) => HelperError::InvalidArgument(message),
        PlanError::UnknownBootLoader { .. } | PlanError::Edit(_) | PlanError::Read { .. } => {
            HelperError::Failed(message)
        }
    }
}

fn apply_error(e: ApplyError) -> HelperError {
    let message = e.message();
    match e {
        ApplyError::InvalidId(_) => HelperError::InvalidArgument(message),
        ApplyError::NotFound(_) => HelperError::NotFound(message),
        _ => HelperError::Failed(message),
    }
}

/// Turns the engine's progress callbacks (on the blocking thread) into `Progress` signal
/// arguments for the method's task.
struct Reporter {
    transaction: Option<String>,
    step: String,
    tx: zruntime::mpmc::Sender<ProgressLine>,
}

impl Reporter {
    fn new(transaction: Option<String>, tx: zruntime::mpmc::Sender<ProgressLine>) -> Self {
        Self {
            transaction,
            step: String::new(),
            tx,
        }
    }

    fn report(&mut self, progress: &Progress) {
        let line = match progress {
            Progress::Started { id } => {
                self.transaction = Some(id.clone());
                return;
            }
            Progress::Step { text, .. } => {
                self.step = text.clone();
                String::new()
            }
            Progress::Output { line } => line.clone(),
        };
        let transaction = self.transaction.clone().unwrap_or_default();
        // The receiver only goes away when the method's task does; then nobody listens.
        let _ = self.tx.try_send((transaction, self.step.clone(), line));
    }
}

/// Emits a `Progress` signal for each line until the work drops its sender.
async fn forward_progress(emitter: &SignalEmitter<'_>, rx: zruntime::mpmc::Receiver<ProgressLine>) {
    while let Ok((transaction, step, line)) = rx.recv().await {
        if let Err(e) = Helper::progress(emitter, &transaction, &step, &line).await {
            tracing::warn!(error = %e, "cannot emit Progress");
        }
    }
}
