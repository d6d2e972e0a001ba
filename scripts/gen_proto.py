"""Generate Python code, type stubs and gRPC stubs from `proto/` (what `make proto` runs).

Proto path = import path: `proto/atelier/data/v1/x.proto` becomes `atelier/data/v1/x_pb2.py`.
Third-party protos (`google/api`, `google/rpc`) are copied from the installed
googleapis-common-protos package into the git-ignored `.proto-deps/` so that protoc and buf see
them without vendoring them into the repository.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
THIRD_PARTY = ("google/api", "google/rpc")


def copy_deps(dest: Path) -> None:
    """Copy the googleapis protos Atelier's protos import into `dest`."""
    from google.api import annotations_pb2

    site = Path(annotations_pb2.__file__).parent.parent.parent
    for sub in THIRD_PARTY:
        for path in sorted((site / sub).glob("*.proto")):
            target = dest / sub / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def proto_files() -> list[str]:
    return sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))


def generate(out: Path) -> None:
    """Generate every proto under `proto/` into `out` (the repository root for `make proto`)."""
    deps = ROOT / ".proto-deps"
    copy_deps(deps)
    well_known = Path(str(resources.files("grpc_tools") / "_proto"))
    files = proto_files()
    # mypy-protobuf writes the .pyi stubs of messages and, unlike --pyi_out, of the gRPC stubs too.
    bin_dir = Path(sys.executable).parent
    args = [
        "grpc_tools.protoc",
        f"-I{ROOT / 'proto'}",
        f"-I{deps}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        f"--grpc_python_out={out}",
        *files,
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")
    packages = {Path(f).parent for f in files}
    for package in packages:
        for parent in [package, *package.parents]:
            if parent == Path("."):
                continue
            init = out / parent / "__init__.py"
            if not init.exists():
                init.parent.mkdir(parents=True, exist_ok=True)
                init.write_text("")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT, help="output root (default: the repository)")
    parser.add_argument("--deps-only", action="store_true", help="only copy third-party protos (for buf lint)")
    args = parser.parse_args()
    if args.deps_only:
        copy_deps(ROOT / ".proto-deps")
    else:
        generate(args.out)


if __name__ == "__main__":
    main()
