//! The `io.github.passthrough.Helper1` object.
//!
//! Every mutating method checks polkit for the caller first, then validates its arguments,
//! then acts, inside a transaction of core's engine; nothing else runs as root on a caller's
//! behalf. Blocking work (scanning the host, writing files, rebuilding the initramfs) runs on
//! zruntime's blocking pool, so the bus connection keeps serving other calls meanwhile, and
//! one transaction at a time runs under `changing`.

use std::sync::{Arc, Mutex, MutexGuard};

use passthrough_core::dbus::{
    encode as encode_dto, HelperError, ACTION_CONFIGURE_HOST, ACTION_MANAGE_DEVICES,
    ACTION_READ_LOGS,
};
use passthrough_core::i18n::gettext_f;
use passthrough_core::plan::Rendered;
use passthrough_core::plan_render::{render, PlanError};
use passthrough_core::transaction::{self, ApplyError, HostRunner, Progress, TransactionId};
use passthrough_core::{HostReport, HostRoot, ScanOptions};
use zbus::interface;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;

use crate::authority::Authority;
use crate::idle::Idle;
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
        let busy = self.idle.busy();
        let caller = caller(&header);
        let root = self.root.clone();
        let result = zruntime::unblock(move || {
            let _busy = busy;
            let (_, rendered) = prepare(&root, &plan)?;
            encode(&rendered)
        })
        .await;
        log_outcome("Preview", &caller, &result);
        result
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
                let id = validate::transaction_id(&transaction)?;
                let id = TransactionId::parse(id).map_err(apply_error)?;
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

    /// JSON list of the journalled transactions, newest first. No privilege.
    async fn transactions(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<String, HelperError> {
        let busy = self.idle.busy();
        let caller = caller(&header);
        let root = self.root.clone();
        let result = zruntime::unblock(move || {
            let _busy = busy;
            let list = transaction::list(&root).map_err(apply_error)?;
            encode(&list)
        })
        .await;
        log_outcome("Transactions", &caller, &result);
        result
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
