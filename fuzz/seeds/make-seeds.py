#!/usr/bin/env python3
"""Writes the fuzz targets' seed inputs into fuzz/corpus/<target>/ from real inputs in the repository:
request targets and Host headers from the tests, the User-Agent table the edge is tested against,
bots.map itself, and the HTML pages of the test corpus, the examples and the unit tests.

Run from the repository root before a first `cargo fuzz run` (`just fuzz` does not need it: the
committed corpora already hold these seeds, minimised with everything the fuzzers found since).
Files are named by the hash of their content, as libFuzzer names its own, so re-running adds nothing.
"""
import glob
import hashlib
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    folder = os.path.join(ROOT, "fuzz", "corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def rust_sources(*folders):
    for folder in folders:
        for path in glob.glob(os.path.join(ROOT, folder, "**", "*.rs"), recursive=True):
            yield read(os.path.relpath(path, ROOT))


# url: `<Host header>\n<request target>[\n<ignored parameter>...]`.
targets = set()
for source in rust_sources("crates/kiln-core", "crates/kiln-gateway", "crates/kiln-e2e",
                           "crates/kiln-dashboard"):
    for match in re.finditer(r'"(/[^"\\\s]{0,200})"', source):
        targets.add(match.group(1))
hosts = ["shop.example.com", "Demo.LocalHost:8080", "example.com.", "EXAMPLE.com.:443", "bücher.de",
         "127.0.0.1:8080", "[::1]:8080", "", ":8080", "a b.com", "evil.com/path", "-bad.com",
         "user@host.com", "xn--bcher-kva.de", "www.example.test", "a_b.example"]
for target in sorted(targets):
    write("url", f"shop.example.com\n{target}")
for host in hosts:
    write("url", f"{host}\n/products/3?b=2&a=1#x")
write("url", "shop.example.com\n/p?a=1&utm_source=x&UTM_medium=y&gclid=z&ref=1\nref\nutm_*")
write("url", "shop.example.com\n/p?%C3%A9t%C3%A9=1&utm_x=2")
write("url", "shop.example.com\n/?\u00e9A\u00e9")

# user_agent: one User-Agent per input, from the table both classifiers are tested against.
for line in read("nginx/tests/user-agents.tsv").splitlines():
    if line and not line.startswith("#") and "\t" in line:
        write("user_agent", line.split("\t", 1)[1])

# bots_map: windows of the real data file (whole it costs a second per run to compile), and the
# unit tests' broken files.
lines = read("nginx/bots.map").splitlines()
header = [line for line in lines if line.startswith("# version:")]
entries = [line for line in lines if line and not line.startswith("#")]
for start in range(0, len(entries), 6):
    write("bots_map", "\n".join(header + entries[start:start + 6]) + "\n")
for text in ["# version: 1\n~*a search\n", "# version: 1\n~*a robots;\n", "# version: 1\n~*(a search;\n",
             "# version: 1\n\"~*a search;\n", "~*a search;\n",
             "# version: test\n~*examplebot search;\n\"~*example bot\" seo;\n~*bot seo;\nExact/1 monitoring;\n"]:
    write("bots_map", text)

# html_output: real pages, and the unit tests' documents.
for pattern in ["crates/kiln-testkit/corpus/*.html", "examples/**/*.html"]:
    for path in glob.glob(os.path.join(ROOT, pattern), recursive=True):
        write("html_output", read(os.path.relpath(path, ROOT)))
for match in re.finditer(r'r#"(<.*?)"#', read("crates/kiln-worker/src/output.rs"), re.S):
    write("html_output", match.group(1))
write("html_output", "<html><body>" + "<div>" * 3000 + "deep" + "</div>" * 3000 + "</body></html>")
write("html_output", "<html><head><head></head><base href=/x><body><svg><script>x</script></svg>")
