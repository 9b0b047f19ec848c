//! Runs a workload against a directory.
