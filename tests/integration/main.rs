//! Integration tests: one binary, a module per feature, each test on its own private
//! dbus-daemon (see `support`).

mod bad_input;
mod busitem;
mod flaps;
mod proxy;
mod registration;

mod support;
mod world;
