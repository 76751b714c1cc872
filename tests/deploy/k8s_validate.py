"""Validate Kubernetes resources offline against kubernetes-validate's strict schemas.

Runs under the deploy tools' Python (scripts/ensure-deploy-tools.sh), not the
project's: reads ``{"versions": [...], "resources": [...]}`` as JSON on stdin and
prints one JSON result per resource and version:
``{"index", "version", "status": "ok" | "invalid" | "no-schema", "message"}``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from kubernetes_validate import utils  # type: ignore[import-not-found]


def check(resource: dict[str, Any], version: str) -> tuple[str, str]:
    try:
        utils.validate(resource, version, strict=True)
    except utils.ValidationError as exc:
        where = ".".join(str(part) for part in exc.path) or "(root)"
        return "invalid", f"{where}: {exc.message}"
    except utils.SchemaNotFoundError as exc:
        return "no-schema", exc.message
    return "ok", ""


def main() -> int:
    request = json.load(sys.stdin)
    results = []
    for index, resource in enumerate(request["resources"]):
        for version in request["versions"]:
            status, message = check(resource, version)
            results.append(
                {"index": index, "version": version, "status": status, "message": message}
            )
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
