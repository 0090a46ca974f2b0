"""Vendor LiteRT.js into static/litertjs/ from the npm registry, and check what is there.

    python scripts/vendor_litertjs.py          # npm pack the pinned packages, check, copy
    python scripts/vendor_litertjs.py --check  # only check the files in static/litertjs/

The app serves these files itself (``server.enableStaticServing``): nothing is loaded from a CDN,
and a classroom without internet runs LiteRT.js. Only the two WebAssembly builds a page without
cross-origin isolation can use are kept: ``internal`` (relaxed SIMD, which LiteRT.js picks where
the browser has it) and ``compat_internal`` (the rest). The threaded build needs COOP/COEP headers,
which Streamlit does not send, and the JSPI build is loaded only on request.

Every file is checked against the sha256 it has in the npm package (``PACKAGE_FILES``). One edit
is made: ``index.js`` imports the bare name ``@litertjs/wasm-utils``, which a browser resolves only
through an import map; it is rewritten to ``./wasm-utils.js``. The edited file has its own sha256
(``VENDORED``), so --check verifies everything that is served.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "2.5.3"
PACKAGES = (f"@litertjs/core@{VERSION}", f"@litertjs/wasm-utils@{VERSION}")
TARGET = Path(__file__).resolve().parent.parent / "static" / "litertjs"
BARE_IMPORT = b'from "@litertjs/wasm-utils";'
LOCAL_IMPORT = b'from "./wasm-utils.js";'
# (tarball, path inside it) -> (file name in static/litertjs, sha256 in the npm package)
PACKAGE_FILES = {
    ("litertjs-core", "package/dist/index.js"): ("index.js", "e7daccc3a31eef890848a737ccb863ded5f046a6b40c3fdc0556495adeb5d9b3"),
    ("litertjs-core", "package/wasm/litert_wasm_internal.js"): (
        "litert_wasm_internal.js",
        "68efb69f770e3f76aff36a377de629ca496c131b86ac0f0f4b592a1543a898eb",
    ),
    ("litertjs-core", "package/wasm/litert_wasm_internal.wasm"): (
        "litert_wasm_internal.wasm",
        "7280cf4471774867e385e6c3cd53e2b45e2975b80fea338fff4ef359b0865614",
    ),
    ("litertjs-core", "package/wasm/litert_wasm_compat_internal.js"): (
        "litert_wasm_compat_internal.js",
        "4d8f894b7883654fd6e8439730aa41e79ceaab7d19184fc4f1f0b0f1a2a2c8a5",
    ),
    ("litertjs-core", "package/wasm/litert_wasm_compat_internal.wasm"): (
        "litert_wasm_compat_internal.wasm",
        "5255c8ad06eabdbd2522cdebf6b22fc10faf74625c23a49b9e072570cd1fa41c",
    ),
    ("litertjs-wasm-utils", "package/dist/index.js"): (
        "wasm-utils.js",
        "e0e20bc28ab001ac732cf40d15b6eebd24fb0deaeb95eeba5100f51eebf015f2",
    ),
}
# The served file's sha256 where it differs from the package's (the one edit above).
VENDORED = {"index.js": "aa78a8a8aa7c72f55b50dd74fe440856e50693326011ef357db9f9dc93738b7b"}
NOTICE = f"""LiteRT.js {VERSION}: the npm packages @litertjs/core and @litertjs/wasm-utils, from Google's LiteRT
repository (https://github.com/google-ai-edge/LiteRT, litert/js), licensed under the Apache License 2.0
(each package.json says "license": "Apache-2.0"). Copied by scripts/vendor_litertjs.py; index.js's import
of @litertjs/wasm-utils is rewritten to ./wasm-utils.js, nothing else is changed.
"""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def expected() -> dict[str, str]:
    """File name in static/litertjs -> the sha256 it must have there."""
    return {name: VENDORED.get(name, digest) for name, digest in PACKAGE_FILES.values()}


def check(folder: Path = TARGET) -> list[str]:
    """What is wrong with the vendored files, one line each ([] when all are as pinned)."""
    problems = []
    for name, digest in expected().items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif (found := sha256(path.read_bytes())) != digest:
            problems.append(f"{name}: sha256 {found}, expected {digest}")
    return problems


def vendor(folder: Path = TARGET) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(["npm", "pack", "--silent", *PACKAGES], cwd=scratch, check=True, stdout=subprocess.DEVNULL)
        folder.mkdir(parents=True, exist_ok=True)
        for (tarball, member), (name, digest) in PACKAGE_FILES.items():
            with tarfile.open(Path(scratch) / f"{tarball}-{VERSION}.tgz") as archive:
                data = archive.extractfile(member).read()
            if sha256(data) != digest:
                raise SystemExit(f"{tarball} {member}: sha256 {sha256(data)}, expected {digest}: not vendored")
            if name == "index.js":
                if data.count(BARE_IMPORT) != 1:
                    raise SystemExit("index.js: its import of @litertjs/wasm-utils is not where it was in 2.5.3")
                data = data.replace(BARE_IMPORT, LOCAL_IMPORT)
            (folder / name).write_bytes(data)
        (folder / "NOTICE").write_text(NOTICE)
    shutil.rmtree(folder / "__pycache__", ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the vendored files")
    if not parser.parse_args().check:
        vendor()
    problems = check()
    for line in problems:
        print(line, file=sys.stderr)
    if not problems:
        print(f"static/litertjs: LiteRT.js {VERSION}, {len(expected())} files as pinned")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
