//! Generates the prost/tonic code from `ringchat/*.proto` with a vendored `protoc`, so a
//! build never needs a system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // tonic-prost-build (through prost-build) reads PROTOC.
    std::env::set_var("PROTOC", protoc);
    let protos = [
        "ringchat/common.proto",
        "ringchat/bus.proto",
        "ringchat/repo.proto",
        "ringchat/logic.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure()
        // notices are rare and large: boxed, they keep every downstream event small
        .boxed(".ringchat.v1.DownstreamBatch.body.notice")
        .build_server(true)
        .build_client(true)
        .compile_protos(&protos, &["."])?;
    Ok(())
}
