//! [`VmService`]: one libvirt connection owned by a worker thread, used by the Virtual
//! machine and Launch steps without blocking the GTK thread.
//!
//! libvirt calls block (a remote `qemu+ssh://` host can take seconds), and its connection is
//! kept open for the app's lifetime (libvirt's `test:///default` driver, which the tests
//! use, even forgets everything when its connection closes). Each call is a closure run on
//! the worker with the connection; its result comes back through a oneshot channel.

use std::sync::mpsc;

use passthrough_core::vm::libvirt::Libvirt;

type Job = Box<dyn FnOnce(&mut Option<Libvirt>) + Send>;

#[derive(Debug, Clone)]
pub struct VmService {
    uri: String,
    jobs: mpsc::Sender<Job>,
}

impl VmService {
    /// Starts the worker; the connection is opened by the first call.
    pub fn new(uri: &str) -> Self {
        let (jobs, receiver) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("libvirt".into())
            .spawn(move || {
                let mut connection: Option<Libvirt> = None;
                for job in receiver {
                    job(&mut connection);
                }
            })
            .expect("a thread for libvirt");
        Self {
            uri: uri.to_owned(),
            jobs,
        }
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Runs `f` with the connection (opening it first if needed); errors come back as
    /// translated sentences.
    pub async fn call<R, F>(&self, f: F) -> Result<R, String>
    where
        R: Send + 'static,
        F: FnOnce(&Libvirt) -> Result<R, String> + Send + 'static,
    {
        let (sender, receiver) = futures_channel::oneshot::channel();
        let uri = self.uri.clone();
        let job: Job = Box::new(move |connection| {
            if connection.is_none() {
                match Libvirt::open(&uri) {
                    Ok(c) => *connection = Some(c),
                    Err(e) => {
                        let _ = sender.send(Err(e.message()));
                        return;
                    }
                }
            }
            let result = f(connection.as_ref().expect("opened above"));
            let _ = sender.send(result);
        });
        if self.jobs.send(job).is_err() {
            return Err(gettextrs::gettext("The connection to libvirt stopped."));
        }
        receiver
            .await
            .unwrap_or_else(|_| Err(gettextrs::gettext("The connection to libvirt stopped.")))
    }
}
