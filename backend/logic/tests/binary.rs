//! The im-logic binary as an operator starts it.

#[test]
fn im_logic_refuses_to_start_without_a_jwt_secret() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_im-logic"))
        .env_remove("RINGCHAT_AUTH__JWT_SECRET")
        .env("RINGCHAT_LOGIC__LISTEN", "127.0.0.1:0")
        .output()
        .expect("im-logic runs");
    assert!(!out.status.success(), "started without a secret");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("auth.jwt_secret is not set"), "{stderr}");
}
