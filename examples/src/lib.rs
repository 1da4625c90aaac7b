//! Runnable examples (skeleton).
