// Marks the library "nodelete" on Linux: the JVM dlcloses a native library when the class loader
// that loaded it is collected (a Flink job's, say), but delivery threads and other class loaders'
// exporters may still run code in it. With DF_1_NODELETE the mapping stays for the process's life.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
