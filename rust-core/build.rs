//! Compiles the C eBPF programs with clang (CO-RE, BTF from `-g`) into OUT_DIR, where
//! `loader` embeds them. vmlinux.h comes from the build machine's BTF unless
//! `VMLINUX_H` points at one.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    // Read at run time, not with env!(): the compiled build script is reused across clones
    // sharing a target dir, and a baked-in path would compile another clone's sources.
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let src = manifest_dir.join("../ebpf-programs");
    println!("cargo:rerun-if-env-changed=VMLINUX_H");
    println!("cargo:rerun-if-env-changed=CLANG");
    // Relative paths: the target dir is shared by clones (make's cache), and an absolute
    // path would keep watching the clone that built first.
    for dir in ["../ebpf-programs", "../ebpf-programs/include"] {
        for entry in std::fs::read_dir(manifest_dir.join(dir)).unwrap() {
            let p = entry.unwrap().path();
            if matches!(p.extension().and_then(|e| e.to_str()), Some("c" | "h")) {
                println!(
                    "cargo:rerun-if-changed={dir}/{}",
                    p.file_name().unwrap().to_string_lossy()
                );
            }
        }
    }

    let vmlinux_dir = out.join("vmlinux");
    std::fs::create_dir_all(&vmlinux_dir).unwrap();
    let vmlinux = vmlinux_dir.join("vmlinux.h");
    match std::env::var("VMLINUX_H") {
        Ok(p) => {
            std::fs::copy(&p, &vmlinux).unwrap_or_else(|e| panic!("copy {p}: {e}"));
        }
        Err(_) => {
            let dump = Command::new("bpftool")
                .args([
                    "btf",
                    "dump",
                    "file",
                    "/sys/kernel/btf/vmlinux",
                    "format",
                    "c",
                ])
                .output()
                .expect("bpftool not found: run `make deps` (needs bpftool to generate vmlinux.h)");
            assert!(
                dump.status.success(),
                "bpftool btf dump failed: {}",
                String::from_utf8_lossy(&dump.stderr)
            );
            std::fs::write(&vmlinux, dump.stdout).unwrap();
        }
    }

    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    // One object: net.bpf.c includes the other programs (context.h, tls.h, h2.h).
    let prog = "net";
    let obj = out.join(format!("{prog}.bpf.o"));
    let status = Command::new(&clang)
        .args([
            "-target",
            "bpf",
            "-D__TARGET_ARCH_x86",
            "-O2",
            "-g",
            "-Wall",
            "-Werror",
        ])
        .arg("-I")
        .arg(&vmlinux_dir)
        .arg("-I")
        .arg(src.join("include"))
        .arg("-c")
        .arg(src.join(format!("{prog}.bpf.c")))
        .arg("-o")
        .arg(&obj)
        .status()
        .expect("clang not found: run `make deps`");
    assert!(status.success(), "clang failed on {prog}.bpf.c");
}
