//! Accepting connections. For now one server: [`echo`], one thread per connection,
//! used by the conformance suites and the benchmarks.

pub mod echo;
