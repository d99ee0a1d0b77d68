"""``doris-operator``: render what the operator would create, print the CRDs, run the operator."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

import yaml

from .api import crdgen
from .api.doriscluster import API_VERSION, KIND
from .api.validation import InvalidResource, parse_cluster
from .builders import build
from .builders.config import config_map_names
from .builders.config import resolve as resolve_config


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_presenter)


def dump(objects: list[dict[str, Any]], fmt: str, out: TextIO) -> None:
    if fmt == "json":
        doc = objects[0] if len(objects) == 1 else {"apiVersion": "v1", "kind": "List", "items": objects}
        json.dump(doc, out, indent=2)
        out.write("\n")
    else:
        out.write(yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, width=110))


def _documents(path: str) -> list[Any]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    docs: list[Any] = []
    for doc in yaml.safe_load_all(text):
        if isinstance(doc, dict) and doc.get("kind") == "List":
            docs.extend(doc.get("items") or [])
        elif doc is not None:
            docs.append(doc)
    return docs


def _redact(obj: dict[str, Any]) -> dict[str, Any]:
    if obj.get("kind") == "Secret":
        obj = dict(obj)
        obj["data"] = dict.fromkeys(obj.get("data", {}), "<redacted: use --show-secrets>")
    return obj


def render(path: str, fmt: str, show_secrets: bool, out: TextIO, err: TextIO) -> int:
    try:
        docs = _documents(path)
    except OSError as exc:
        err.write(f"{path}: {exc.strerror or exc}\n")
        return 1
    except yaml.YAMLError as exc:
        err.write(f"{path}: not valid YAML: {exc}\n".replace("\n\n", "\n"))
        return 1
    config_maps = {
        (d.get("metadata") or {}).get("name", ""): d.get("data") or {}
        for d in docs
        if isinstance(d, dict) and d.get("kind") == "ConfigMap"
    }
    objects: list[dict[str, Any]] = []
    failed = False
    clusters = 0
    for index, doc in enumerate(docs, start=1):
        if not isinstance(doc, dict) or doc.get("kind") != KIND:
            continue
        clusters += 1
        label = f"{path}: document {index}"
        name = (doc.get("metadata") or {}).get("name") if isinstance(doc.get("metadata"), dict) else None
        if name:
            label += f" ({KIND} {name})"
        if doc.get("apiVersion") != API_VERSION:
            err.write(f"{label}: apiVersion: must be {API_VERSION}, got {doc.get('apiVersion')!r}\n")
            failed = True
            continue
        try:
            cluster = parse_cluster(doc)
        except InvalidResource as exc:
            for problem in exc.problems:
                err.write(f"{label}: {problem}\n")
            failed = True
            continue
        for comp, spec in cluster.components():
            missing = [cm for cm in config_map_names(spec) if cm not in config_maps]
            if missing and resolve_config(comp, spec, config_maps).source is None:
                err.write(
                    f"{label}: note: spec.{comp}Spec.configMapInfo names ConfigMap {missing[0]!r}, which is "
                    f"not in {path}; ports and paths use Doris defaults\n"
                )
        objects.extend(build(cluster, config_maps))
    if clusters == 0:
        err.write(f"{path}: no {KIND} ({API_VERSION}) found\n")
        return 1
    if failed:
        return 1
    dump(objects if show_secrets else [_redact(o) for o in objects], fmt, out)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="doris-operator", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_render = sub.add_parser(
        "render", help="print every object the operator would create for the DorisClusters in a file"
    )
    p_render.add_argument(
        "-f", "--filename", required=True, help="YAML file ('-' for stdin); ConfigMaps in it are read"
    )
    p_render.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    p_render.add_argument(
        "--show-secrets", action="store_true", help="print Secret data instead of redacting it"
    )
    p_crds = sub.add_parser("crds", help="print the CustomResourceDefinitions")
    p_crds.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    return parser


def main(argv: Iterable[str] | None = None) -> int:
    args = _parser().parse_args(list(argv) if argv is not None else None)
    if args.command == "render":
        return render(args.filename, args.output, args.show_secrets, sys.stdout, sys.stderr)
    if args.command == "crds":
        dump(crdgen.all_crds(), args.output, sys.stdout)
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
