//! The boundary of `engage:plugin@0.1.0` (`wit/since_v0.1.0`): its
//! generated types to the host's and back, and the dispatch of a call to
//! its worlds' exports. 0.1.0 has no config check: every config binds.

crate::boundary::boundary!(v0_1_0);
