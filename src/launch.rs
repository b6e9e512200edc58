//! `passthrough --launch-vm UUID`, what an app-grid launcher runs: no main window; the launch
//! (core's [`launcher::launch`]) runs on a thread of its own, each step shows as a desktop
//! notification (one per VM, replaced as the launch goes on) and as a line on stderr, the
//! application is held until the launch is over, then quits. The viewer it opens outlives it.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use gettextrs::gettext;
use gtk::prelude::*;
use gtk::{gdk, gio, glib};
use passthrough_core::vm::launcher::{self, LaunchEvent, LaunchHooks};
use passthrough_core::vm::libvirt::Libvirt;
use passthrough_core::{HostReport, HostRoot, ScanOptions};

use crate::application::PtApplication;

/// The desktop's startup notification of this launch, as the variable that hands it on:
/// given to the viewer, whose window then ends the launch feedback (and gets the focus).
/// GTK takes the variable out of the environment when it loads and keeps its value on the
/// display.
fn startup_environment() -> Vec<(String, String)> {
    let Some(display) = gdk::Display::default() else {
        return Vec::new();
    };
    let Some(id) = display
        .startup_notification_id()
        .filter(|id| !id.is_empty())
    else {
        return Vec::new();
    };
    let variable = if display.type_().name().contains("Wayland") {
        "XDG_ACTIVATION_TOKEN"
    } else {
        "DESKTOP_STARTUP_ID"
    };
    vec![(variable.to_owned(), id.to_string())]
}

enum Message {
    Event(LaunchEvent, String),
    /// A sentence shown as it is, after the launch's last event.
    Notice(String),
    Done(Result<bool, ()>),
}

/// Launches `target` (a VM's UUID or name) on the app's libvirt connection. Sets the app's
/// exit code when done: 0 when the VM runs, 1 when not.
pub(crate) fn start(app: &PtApplication, target: String) {
    let guard = app.hold();
    let startup_env = startup_environment();
    let root: PathBuf = app.root();
    let uri = launcher::default_uri();
    let notifications = app.dbus_connection().is_some();
    if !notifications {
        tracing::warn!("no session bus: the launch's progress goes to stderr only");
    } else {
        warn_without_notification_service(app);
    }
    let (sender, mut receiver) = futures_channel::mpsc::unbounded::<Message>();
    let env = startup_env.clone();
    let worker_target = target.clone();
    let spawned = std::thread::Builder::new()
        .name("launch".into())
        .spawn(move || {
            let root = HostRoot::new(root);
            let report = HostReport::scan(&root, &ScanOptions::default());
            let viewer = launcher::find_viewer(&std::env::var_os("PATH").unwrap_or_default());
            let mut viewer_started = false;
            let mut reset = |address: &_| launcher::reset_gpu_with_helper(&root, address);
            let mut spawn = |argv: &[String]| {
                let pid = launcher::spawn_detached(argv, &env)?;
                viewer_started = true;
                Ok(pid)
            };
            let mut event = |e: &LaunchEvent, vm: &str| {
                let _ = sender.unbounded_send(Message::Event(e.clone(), vm.to_owned()));
            };
            let result = launcher::launch(
                &uri,
                &worker_target,
                &report,
                &viewer,
                LaunchHooks {
                    reset_gpu: &mut reset,
                    spawn: &mut spawn,
                    event: &mut event,
                },
            );
            if let Some(notice) = clean_stale_launchers(&uri, &worker_target) {
                let _ = sender.unbounded_send(Message::Notice(notice));
            }
            let _ =
                sender.unbounded_send(Message::Done(result.map(|_| viewer_started).map_err(drop)));
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the launch thread: {e}");
        app.set_launch_exit_code(1);
        return;
    }
    let app = app.clone();
    glib::spawn_future_local(async move {
        let id = format!("launch-vm-{}", target.to_ascii_lowercase());
        let notifier = Rc::new(Notifier::new(&app, &id, notifications));
        let mut ok = false;
        let mut viewer_started = false;
        while let Some(message) = receiver.next().await {
            match message {
                Message::Event(event, vm) => {
                    let text = event.message(&vm);
                    eprintln!("{text}");
                    notifier.show(notification(&event, &vm, &text));
                }
                Message::Notice(text) => {
                    eprintln!("{text}");
                    if notifications {
                        let notification = gio::Notification::new(&gettext("Passthrough"));
                        notification.set_body(Some(&text));
                        app.send_notification(Some(&format!("{id}-launcher")), &notification);
                    }
                }
                Message::Done(result) => {
                    ok = result.is_ok();
                    viewer_started = result.unwrap_or(false);
                }
            }
        }
        notifier.finish().await;
        app.set_launch_exit_code(if ok { 0 } else { 1 });
        if !viewer_started {
            // No window of ours or of a viewer ends the desktop's launch feedback: end it here.
            if let (Some(display), Some((_, id))) = (gdk::Display::default(), startup_env.first()) {
                display.notify_startup_complete(id);
            }
        }
        // The notifications are on their way to the bus before the process ends.
        if let Some(connection) = app.dbus_connection() {
            if let Err(e) = connection.flush_future().await {
                tracing::warn!("cannot flush the session bus: {e}");
            }
        }
        drop(guard);
    });
}

/// The launch's notification, replaced at each step. Steps often follow each other within
/// milliseconds; GIO's fallback backend (org.freedesktop.Notifications) replaces a
/// notification only once the service has answered for the one before, so a step is shown
/// at least [`Notifier::GAP`] after the one before, and a step overtaken in the meantime is
/// not shown at all. The last one always is.
struct Notifier {
    app: PtApplication,
    id: String,
    enabled: bool,
    last: Cell<Option<Instant>>,
    pending: RefCell<Option<gio::Notification>>,
    timer: RefCell<Option<glib::SourceId>>,
}

impl Notifier {
    const GAP: Duration = Duration::from_millis(250);

    fn new(app: &PtApplication, id: &str, enabled: bool) -> Self {
        Self {
            app: app.clone(),
            id: id.to_owned(),
            enabled,
            last: Cell::new(None),
            pending: RefCell::new(None),
            timer: RefCell::new(None),
        }
    }

    /// How long until the next notification may be sent.
    fn wait(&self) -> Duration {
        self.last
            .get()
            .map_or(Duration::ZERO, |at| Self::GAP.saturating_sub(at.elapsed()))
    }

    fn send(&self, notification: &gio::Notification) {
        self.app.send_notification(Some(&self.id), notification);
        self.last.set(Some(Instant::now()));
    }

    fn show(self: &Rc<Self>, notification: gio::Notification) {
        if !self.enabled {
            return;
        }
        let wait = self.wait();
        if wait.is_zero() && self.timer.borrow().is_none() {
            self.send(&notification);
            return;
        }
        self.pending.replace(Some(notification));
        if self.timer.borrow().is_none() {
            let this = self.clone();
            let source = glib::timeout_add_local_once(wait, move || {
                this.timer.take();
                if let Some(n) = this.pending.take() {
                    this.send(&n);
                }
            });
            self.timer.replace(Some(source));
        }
    }

    /// Sends the step still waiting, if any.
    async fn finish(&self) {
        if let Some(source) = self.timer.take() {
            source.remove();
        }
        if let Some(n) = self.pending.take() {
            glib::timeout_future(self.wait()).await;
            self.send(&n);
        }
    }
}

/// Removes the launchers of VMs that no longer exist (deleted outside the app); when the one
/// just clicked is among them, says so.
fn clean_stale_launchers(uri: &str, target: &str) -> Option<String> {
    let home = launcher::data_home()?;
    let connection = Libvirt::open(uri).ok()?;
    let removed = launcher::clean_stale(&connection, &home)
        .map_err(|e| tracing::warn!("cannot clean the launchers of deleted VMs: {e}"))
        .ok()?;
    for path in &removed {
        tracing::info!("removed the launcher {} of a deleted VM", path.display());
    }
    let clicked = launcher::desktop_file_name(target).ok()?;
    removed
        .iter()
        .any(|p| p.file_name().is_some_and(|n| *n == *clicked))
        .then(|| {
            gettext(
                "The virtual machine no longer exists, so its launcher was removed from the app grid.",
            )
        })
}

/// The notification of one step: the VM's name as title (the app's name while only the
/// launcher's UUID is known), the step as body.
fn notification(event: &LaunchEvent, vm: &str, text: &str) -> gio::Notification {
    let title = if launcher::is_uuid(vm) {
        gettext("Passthrough")
    } else {
        vm.to_owned()
    };
    let notification = gio::Notification::new(&title);
    notification.set_body(Some(text));
    notification.set_icon(&gio::ThemedIcon::new(launcher::ICON));
    notification.set_priority(if event.is_failure() {
        gio::NotificationPriority::High
    } else {
        gio::NotificationPriority::Normal
    });
    notification
}

/// Logs (and says on stderr) when nothing on the session bus shows notifications: GIO sends
/// them anyway and only warns once, so the progress lines on stderr are all there is.
fn warn_without_notification_service(app: &PtApplication) {
    let Some(connection) = app.dbus_connection() else {
        return;
    };
    glib::spawn_future_local(async move {
        let call = |method: &'static str, args: Option<glib::Variant>| {
            connection.call_future(
                Some("org.freedesktop.DBus"),
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                method,
                args.as_ref(),
                None,
                gio::DBusCallFlags::NONE,
                2000,
            )
        };
        let mut found = false;
        for name in ["org.gtk.Notifications", "org.freedesktop.Notifications"] {
            if let Ok(reply) = call("NameHasOwner", Some((name,).to_variant())).await {
                found |= reply.get::<(bool,)>().is_some_and(|(owned,)| owned);
            }
        }
        if !found {
            if let Ok(reply) = call("ListActivatableNames", None).await {
                found = reply.get::<(Vec<String>,)>().is_some_and(|(names,)| {
                    names.iter().any(|n| {
                        n == "org.freedesktop.Notifications" || n == "org.gtk.Notifications"
                    })
                });
            }
        }
        if !found {
            tracing::warn!("no notification service on the session bus");
            eprintln!(
                "{}",
                gettext(
                    "passthrough: no notification service is running: the launch's progress is shown here only."
                )
            );
        }
    });
}
