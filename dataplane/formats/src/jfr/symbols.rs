//! Pyroscope's rewrites of JVM symbols whose text changes from one JVM run
//! to the next (generated classes, native libraries unpacked under a
//! random name). Each class name and method name of a recording is
//! rewritten on its own, so one function keeps one name across restarts
//! and uploads merge into the same flame graph nodes as in Pyroscope.
//!
//! | Symbol | Becomes |
//! |---|---|
//! | `jdk/internal/reflect/GeneratedMethodAccessor31` | `jdk/internal/reflect/GeneratedMethodAccessor_` |
//! | `App$$Lambda$14/0x0000000801001000`, `App$$Lambda/0x00007f…`, `App$$Lambda$669.0x…` | `App$$Lambda_` |
//! | `libzstd-jni-1.5.1-16931311898282279136.so` (optionally under `/tmp/`, ` (deleted)`) | `libzstd-jni-_.so` |
//! | `libamazonCorrettoCryptoProvider109b39cf33c563eb.so`, `amazonCorrettoCryptoProviderNativeLibraries.<16 hex>/libcrypto.so` | `libamazonCorrettoCryptoProvider_.so` |
//! | `libasyncProfiler-linux-x64-17b9a1d8156277a98ccc871afa9a8f69215f92.so` (that build only) | `libasyncProfiler-_.so` |

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

struct Rule {
    pattern: Regex,
    replacement: &'static str,
}

static RULES: LazyLock<[Rule; 5]> = LazyLock::new(|| {
    let rule = |p: &str, replacement| Rule { pattern: Regex::new(p).expect("valid symbol rule"), replacement };
    [
        rule(r"^(jdk/internal/reflect/GeneratedMethodAccessor)\d+$", "${1}_"),
        rule(r"^(.+\$\$Lambda)(\$?\d*[./](0x)?[\da-f]+|\d+)$", "${1}_"),
        rule(r"^(\.?/tmp/)?libzstd-jni-\d+\.\d+\.\d+-\d+\.so( \(deleted\))?$", "libzstd-jni-_.so"),
        rule(
            r"^(\.?/tmp/)?(lib)?amazonCorrettoCryptoProvider(NativeLibraries\.)?[0-9a-f]{16}(/libcrypto|/libamazonCorrettoCryptoProvider)?\.so( \(deleted\))?$",
            "libamazonCorrettoCryptoProvider_.so",
        ),
        rule(
            r"^(\.?/tmp/)?libasyncProfiler-(linux-arm64|linux-musl-x64|linux-x64|macos)-17b9a1d8156277a98ccc871afa9a8f69215f92\.so( \(deleted\))?$",
            "libasyncProfiler-_.so",
        ),
    ]
});

/// `symbol` after every rule, in order (borrowed when no rule applies).
pub(crate) fn rewrite(symbol: &str) -> Cow<'_, str> {
    // Every rule needs one of these; most symbols have none.
    if !(symbol.contains("Lambda") || symbol.contains("GeneratedMethodAccessor") || symbol.contains(".so")) {
        return Cow::Borrowed(symbol);
    }
    let mut out = Cow::Borrowed(symbol);
    for r in RULES.iter() {
        if let Cow::Owned(s) = r.pattern.replace(&out, r.replacement) {
            out = Cow::Owned(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn generated_names_merge() {
        let cases = [
            ("jdk/internal/reflect/GeneratedMethodAccessor31", "jdk/internal/reflect/GeneratedMethodAccessor_"),
            ("App$$Lambda$14/0x0000000801001000", "App$$Lambda_"),
            ("App$$Lambda/0x00007f0ac4406598", "App$$Lambda_"),
            (
                "org/example/rideshare/OrderService$$Lambda$669.0x0000000800fd7318",
                "org/example/rideshare/OrderService$$Lambda_",
            ),
            ("libzstd-jni-1.5.1-16931311898282279136.so", "libzstd-jni-_.so"),
            ("/tmp/libzstd-jni-1.5.1-16931311898282279136.so (deleted)", "libzstd-jni-_.so"),
            ("./tmp/libamazonCorrettoCryptoProvider109b39cf33c563eb.so", "libamazonCorrettoCryptoProvider_.so"),
            (
                "./tmp/amazonCorrettoCryptoProviderNativeLibraries.7382c2f79097f415/libcrypto.so (deleted)",
                "libamazonCorrettoCryptoProvider_.so",
            ),
            ("libasyncProfiler-linux-arm64-17b9a1d8156277a98ccc871afa9a8f69215f92.so", "libasyncProfiler-_.so"),
        ];
        for (symbol, want) in cases {
            assert_eq!(rewrite(symbol), want, "{symbol}");
        }
        // Left as they are: other builds, other shapes, ordinary names.
        for symbol in [
            "libasyncProfiler-linux-x64-d73f214b50539537b06070b954cbc95c10a06024.so",
            "com.datadog.profiling.controller.ProfilingSystem$$Lambda+0x00007f0ac4406598/4375842",
            "java/lang/Thread",
            "run",
            "libc.so.6",
        ] {
            assert_eq!(rewrite(symbol), symbol);
        }
    }
}
