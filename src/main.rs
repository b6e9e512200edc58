fn main() -> gtk::glib::ExitCode {
    passthrough::run()
}
