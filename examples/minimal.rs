//! The floor for the start-up benchmark: the smallest GTK 4 + libadwaita window, built with
//! the same toolchain and profile as Passthrough. `build-aux/bench` compares the two.
//! It prints `first-frame-ns` (wall clock at its first painted frame) and `rss-kb`, then quits.

use adw::prelude::*;

fn main() -> gtk::glib::ExitCode {
    let app = adw::Application::builder()
        .application_id("io.github.passthrough.Minimal")
        .flags(gtk::gio::ApplicationFlags::NON_UNIQUE)
        .build();
    app.connect_activate(|app| {
        let window = adw::ApplicationWindow::builder()
            .application(app)
            .default_width(1100)
            .default_height(720)
            .content(&adw::StatusPage::builder().title("Minimal").build())
            .build();
        window.present();
        passthrough::timing::report_first_frame(&window, true);
    });
    app.run_with_args::<&str>(&[])
}
