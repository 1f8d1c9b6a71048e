//! Build-time code generation for the core.

fn main() {
    compile_proto();
}

/// The app <-> core contract, `proto/phonehome.proto`, compiled to prost types without protoc:
/// protox parses the file into a descriptor set that prost-build turns into Rust. Only with the
/// `proto` feature (the JNI bridge and its tests); the CLI build does not need it.
fn compile_proto() {
    #[cfg(feature = "proto")]
    {
        let proto_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
        let file = proto_dir.join("phonehome.proto");
        println!("cargo:rerun-if-changed={}", file.display());
        let descriptors = match protox::compile([&file], [&proto_dir]) {
            Ok(set) => set,
            Err(err) => {
                println!("cargo:warning={}: {err}", file.display());
                std::process::exit(1);
            }
        };
        if let Err(err) = prost_build::Config::new().compile_fds(descriptors) {
            println!("cargo:warning=prost-build for {}: {err}", file.display());
            std::process::exit(1);
        }
    }
}
