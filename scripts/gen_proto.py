"""Generate Python code, type stubs and gRPC stubs from `proto/` (what `make proto` runs).

Proto path = import path: `proto/atelier/data/v1/x.proto` becomes `atelier/data/v1/x_pb2.py`.
The one exception is the KServe v2 / Triton protocol in `proto/inference/` (a standard, package
`inference`): it keeps its upstream file names (`grpc_service.proto`, `model_config.proto`) so that
its descriptors are the very ones tritonclient registers in Python's process-wide descriptor pool,
which lets both be imported in one process. It is compiled with `proto/inference` as include root
into `atelier/inference/protocol/`, and its two generated cross-imports are made package-relative.

Atelier's own protos are also written as one descriptor set with their comments
(`atelier/proto_comments.binpb`, `--include_source_info`): the generated modules drop source info,
and the gateway's OpenAPI takes its descriptions from those comments.

Third-party protos (`google/api`, `google/rpc`) are copied from the installed
googleapis-common-protos package into the git-ignored `.proto-deps/` so that protoc and buf see
them without vendoring them into the repository.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
THIRD_PARTY = ("google/api", "google/rpc")
STANDARD = Path("inference")  # under proto/: the KServe v2 / Triton protocol
STANDARD_PACKAGE = Path("atelier/inference/protocol")
COMMENTS = Path("atelier/proto_comments.binpb")
_STANDARD_IMPORT = re.compile(r"^import (grpc_service_pb2|model_config_pb2)\b", re.MULTILINE)


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
    """Atelier's own protos (paths relative to `proto/`), without the standard in `proto/inference/`."""
    root = ROOT / "proto"
    found = (p.relative_to(root) for p in root.rglob("*.proto"))
    return sorted(str(p) for p in found if STANDARD not in p.parents)


def _protoc(include: list[Path], out: Path, files: list[str], extra: tuple[str, ...] = ()) -> None:
    # mypy-protobuf writes the .pyi stubs of messages and, unlike --pyi_out, of the gRPC stubs too.
    bin_dir = Path(sys.executable).parent
    args = [
        "grpc_tools.protoc",
        *(f"-I{path}" for path in include),
        f"--python_out={out}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        f"--grpc_python_out={out}",
        *extra,
        *files,
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")


def generate_standard(out: Path, well_known: Path) -> None:
    """Generate the KServe v2 / Triton protocol into `atelier/inference/protocol/` under `out`."""
    source = ROOT / "proto" / STANDARD
    files = sorted(p.name for p in source.glob("*.proto"))
    target = out / STANDARD_PACKAGE
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        _protoc([source, well_known], Path(scratch), files)
        for generated in sorted(Path(scratch).iterdir()):
            text = _STANDARD_IMPORT.sub(rf"from {'.'.join(STANDARD_PACKAGE.parts)} import \1", generated.read_text())
            (target / generated.name).write_text(text)
    _init_files(out, [STANDARD_PACKAGE])


def _init_files(out: Path, packages: set[Path] | list[Path]) -> None:
    for package in packages:
        for parent in [package, *package.parents]:
            if parent == Path("."):
                continue
            init = out / parent / "__init__.py"
            if not init.exists():
                init.parent.mkdir(parents=True, exist_ok=True)
                init.write_text("")


def generate(out: Path) -> None:
    """Generate every proto under `proto/` into `out` (the repository root for `make proto`)."""
    deps = ROOT / ".proto-deps"
    copy_deps(deps)
    well_known = Path(str(resources.files("grpc_tools") / "_proto"))
    files = proto_files()
    comments = ("--include_source_info", f"--descriptor_set_out={out / COMMENTS}")
    _protoc([ROOT / "proto", deps, well_known], out, files, comments)
    _init_files(out, {Path(f).parent for f in files})
    generate_standard(out, well_known)


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
