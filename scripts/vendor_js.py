#!/usr/bin/env python3
"""Vendor the chart libraries the HTML report inlines (src/delegatewatch/outputs/static/).

Fetches the published npm tarballs with ``npm pack`` (the npm registry, through npm itself), and
copies only the minified browser builds and their LICENSE files, plus VERSIONS.json (version,
registry integrity, sha256 of each copied file). Re-run after changing a version below:

    python scripts/vendor_js.py            # vendor the pinned versions
    python scripts/vendor_js.py --check    # verify the vendored files against VERSIONS.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

STATIC = Path(__file__).resolve().parent.parent / "src" / "delegatewatch" / "outputs" / "static"

#: package → (version, file inside the tarball). vega-embed 7 carries its own CSP-safe expression
#: interpreter (used with the ``ast: true`` embed option), so vega-interpreter is not needed.
PACKAGES = {
    "vega": ("6.4.0", "package/build/vega.min.js"),
    "vega-lite": ("6.5.0", "package/build/vega-lite.min.js"),
    "vega-embed": ("7.3.0", "package/build/vega-embed.min.js"),
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def vendor() -> None:
    STATIC.mkdir(parents=True, exist_ok=True)
    versions: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (version, member) in PACKAGES.items():
            out = subprocess.run(["npm", "pack", "--json", f"{name}@{version}"], cwd=tmp, check=True,
                                 capture_output=True, text=True).stdout
            info = json.loads(out)[0]
            with tarfile.open(Path(tmp) / info["filename"]) as tar:
                names = tar.getnames()
                licence = next(n for n in names if n.lower() in ("package/license", "package/license.md",
                                                                "package/license.txt"))
                for src, dest in ((member, f"{name}.min.js"), (licence, f"{name}.LICENSE")):
                    f = tar.extractfile(src)
                    assert f is not None, src
                    (STATIC / dest).write_bytes(f.read())
            js = STATIC / f"{name}.min.js"
            if b"</script" in js.read_bytes().lower():
                sys.exit(f"{name}: the build contains '</script' and cannot be inlined as is")
            versions[name] = {"version": version, "file": js.name, "license_file": f"{name}.LICENSE",
                              "integrity": info.get("integrity"), "sha256": sha256(js)}
            print(f"{name}@{version}: {js.name} ({js.stat().st_size:,} bytes)")
    (STATIC / "VERSIONS.json").write_text(json.dumps(versions, indent=2) + "\n")


def check() -> int:
    versions = json.loads((STATIC / "VERSIONS.json").read_text())
    bad = [n for n, v in versions.items() if sha256(STATIC / v["file"]) != v["sha256"]]
    for n in bad:
        print(f"{n}: {versions[n]['file']} differs from VERSIONS.json", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify the vendored files")
    args = parser.parse_args()
    if args.check:
        sys.exit(check())
    if shutil.which("npm") is None:
        sys.exit("npm is needed to vendor the chart libraries (apt-get install npm, or Node.js from nodejs.org)")
    vendor()
