"""The Go heap reserve: kept once per process, sized by the setting, off when Go is tuned.

Each case runs in a fresh interpreter, since the reserve lives as long as the process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SEED = Path(__file__).resolve().parents[2] / "examples" / "policies.yaml"

# Prints what the process holds: the MiB reported, and the length of the string the holder
# engine really has in its Go heap (read back by evaluating it).
PROBE = """
import json, sys
from veto_opa.engines import embedded
first = {first}
reported = embedded.reserve_go_heap(first, wait=True) if first is not None else None
{veto}
again = embedded.reserve_go_heap(64, wait=True)
held = [e.eval_query("x := count(data.reserve)")[0]["x"] for e in embedded._reserve_holder]
print(json.dumps({{"reported": reported, "again": again, "held": held}}))
"""

VETO = """
from veto_opa import Veto
v = Veto([{seed!r}], records=False, spans=False, reload_interval=0)
assert v.guard("execute_sql", {{"statement": "DROP TABLE t"}},
               {{"environment": "production"}}).decision == "deny"
v.close()
"""


def probe(first: int | None, *, veto: bool = False, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("GOGC", "GOMEMLIMIT", "VETO_GO_HEAP_RESERVE")}
    environ.update(env)
    script = PROBE.format(first=first, veto=VETO.format(seed=str(SEED)) if veto else "")
    done = subprocess.run([sys.executable, "-c", script], env=environ, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_first_request_sizes_the_reserve_for_the_process() -> None:
    seen = probe(2)

    assert seen["reported"] == 2
    assert seen["again"] == 2                      # a later, larger request changes nothing
    assert seen["held"] == [2 << 20]               # one holder, with 2 MiB in its data


def test_veto_reserves_the_configured_size_and_still_decides() -> None:
    seen = probe(None, veto=True, VETO_GO_HEAP_RESERVE="3")

    assert seen["again"] == 3
    assert seen["held"] == [3 << 20]


def test_veto_reserves_16_mib_by_default() -> None:
    assert probe(None, veto=True)["held"] == [16 << 20]


def test_zero_turns_the_reserve_off() -> None:
    seen = probe(None, veto=True, VETO_GO_HEAP_RESERVE="0")

    # Nothing was reserved, so the probe's later request for 64 MiB is the first.
    assert seen["again"] == 64
    assert seen["held"] == [64 << 20]


@pytest.mark.parametrize("variable", ["GOGC", "GOMEMLIMIT"])
def test_a_process_started_with_go_tuning_gets_no_reserve(variable: str) -> None:
    seen = probe(4, **{variable: "200" if variable == "GOGC" else "512MiB"})

    assert (seen["reported"], seen["again"], seen["held"]) == (0, 0, [])
