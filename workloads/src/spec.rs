//! Workload specs (YAML).
