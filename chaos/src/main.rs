//! concord-chaos (skeleton; filled by the chaos issue).
fn main() {}
