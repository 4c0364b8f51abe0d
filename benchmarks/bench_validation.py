"""Schema validation cost of a 1 MiB resource-lists document (issue 6: well under 50 ms).

Run: ``python benchmarks/bench_validation.py`` -- prints the best and median CPU time of 7 runs.
"""

from __future__ import annotations

import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))

from lxml import etree  # noqa: E402

from test_validation import _big_resource_lists  # noqa: E402
from xcap_wsgi.usages import ValidationContext, default_registry  # noqa: E402
from xcap_wsgi.validation import preload  # noqa: E402


def main() -> None:
    data = _big_resource_lists()
    registry = default_registry()
    preload(registry)
    usage = registry.get("resource-lists")
    tree = etree.fromstring(data).getroottree()
    context = ValidationContext(uri=None, usage=usage, content=data)
    timings = []
    for _ in range(7):
        start = time.thread_time()
        usage.validate(tree, context)
        timings.append((time.thread_time() - start) * 1000)
    print(f"resource-lists {len(data) / 1024:.0f} KiB: validation (schema + RFC 4826 constraints) "
          f"best {min(timings):.1f} ms, median {statistics.median(timings):.1f} ms CPU")


if __name__ == "__main__":
    main()
