//! Unit tests of the graph partitioning on small hand-built graphs.
