"""Runs a small task graph on a Skein cluster from Python.

    /usr/bin/python3 examples/python/example.py tcp://127.0.0.1:8786

The workers must have loaded examples/tasks/tasks.mjs (skein worker ... --module examples/tasks/tasks.mjs).
"""

import os
import sys

from skein_client import SkeinClient


def main() -> int:
    address = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SKEIN_SCHEDULER", "tcp://127.0.0.1:8786")
    with SkeinClient(address) as client:
        a = client.call("inc", 1)
        b = client.call("inc", 2)
        c = client.call("add", a, b)          # depends on a and b: their results are passed in
        total = client.call("sum", [a, b, c])  # references inside a list work too
        results = client.compute([a, b, c, total])
        print(f"inc(1) = {results[a.key]}")
        print(f"inc(2) = {results[b.key]}")
        print(f"add(inc(1), inc(2)) = {results[c.key]}")
        print(f"sum([inc(1), inc(2), add(...)]) = {results[total.key]}")

        # A task that throws: its error comes back with the JavaScript error's type and message.
        [failing] = client.submit([client.call("fail", "boom")])
        kind, error = client.outcome(failing)
        print(f"fail('boom') -> {kind}: {error}")

        client.release([*results, failing])  # optional: closing the session releases them too
        print(f"result: {results[total.key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
