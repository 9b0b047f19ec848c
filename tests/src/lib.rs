//! End-to-end tests live in `tests/`; this library only anchors the package.
