//! Cross-plugin integration tests of the worker mesh live in `tests/tests/`. This library is empty
//! on purpose: it only gives the test files a crate to belong to.
