//! Start-up measurement for `build-aux/bench`: when the first frame of a window has been
//! painted, print the wall clock (so the benchmark can subtract the moment it spawned the
//! process, exec and library loading included) and the resident memory at that moment.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use gtk::glib;
use gtk::prelude::*;

/// Resident set size of this process in KiB, from `/proc/self/status` (the process itself,
/// not host state, so not read through a HostRoot).
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Prints `first-frame-ns: N rss-kb: M` after the window's first painted frame; quits the
/// application afterwards when `quit` is true.
pub fn report_first_frame(window: &impl IsA<gtk::Window>, quit: bool) {
    let window = window.as_ref().clone();
    let handler: Rc<RefCell<Option<glib::SignalHandlerId>>> = Rc::default();
    let install = {
        let handler = handler.clone();
        move |w: &gtk::Window| {
            let Some(clock) = w.frame_clock() else { return };
            let win = w.clone();
            let handler2 = handler.clone();
            let id = clock.connect_after_paint(move |clock| {
                let ns = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                println!("first-frame-ns: {ns} rss-kb: {}", rss_kib().unwrap_or(0));
                if let Some(id) = handler2.borrow_mut().take() {
                    clock.disconnect(id);
                }
                if quit {
                    if let Some(app) = win.application() {
                        app.quit();
                    }
                }
            });
            handler.borrow_mut().replace(id);
        }
    };
    if window.is_mapped() {
        install(&window);
    } else {
        window.connect_map(move |w| install(w));
    }
}
