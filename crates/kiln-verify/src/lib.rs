//! Domain ownership verification (work in progress).
