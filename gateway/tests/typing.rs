//! Typing indicators (issue 12) end to end with real clients in the embedded profile;
//! `distributed.rs` runs the same checks on the real engines across two gateways.

mod common;

use common::*;

#[test]
fn typing_reaches_the_other_members_only_throttled_and_never_stored() {
    let sys = System::start();
    let (a, b, outsider) = (sys.user("ty_a"), sys.user("ty_b"), sys.user("ty_o"));
    check_typing(&a, &b, &outsider);
}
