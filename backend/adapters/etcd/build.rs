//! Generates the etcd v3 gRPC client (KV, Watch, Lease) from `proto/etcd/*.proto` with a
//! vendored `protoc`, so a build never needs a system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // tonic-prost-build (through prost-build) reads PROTOC.
    std::env::set_var("PROTOC", protoc);
    let protos = ["proto/etcd/rpc.proto", "proto/etcd/kv.proto"];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_protos(&protos, &["proto"])?;
    Ok(())
}
