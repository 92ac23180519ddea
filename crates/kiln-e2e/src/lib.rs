//! End-to-end tests of the whole platform live in `tests/it`: a real nginx edge in front of a real
//! gateway, a worker driving real Chromium, a real Redis, and the demo single-page app as the origin.
//! Architecture invariant: this crate has no library code; it exists so that those tests may depend
//! on every service's library without making any service depend on another.
