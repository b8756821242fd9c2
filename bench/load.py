"""Load generators: wrk (the reference) and a small asyncio fallback for the smoke test or when wrk is missing."""

import asyncio
import random
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.scenarios import Request

WRK_MISSING = "wrk is not installed: `apt-get install wrk` (Debian's package is the reference load generator)."


@dataclass(frozen=True)
class Figures:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    cpu_us_per_req: float = float("nan")
    """CPU time (user + system) the server's processes spent per request during the run; set by the driver."""


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def _lua(requests: list[Request], headers: dict[str, str]) -> str:
    def quote(text: str) -> str:
        return f"[==[{text}]==]"

    rows = ",\n".join(
        "{" + ", ".join([quote(m), quote(p), quote(b) if b is not None else "nil"]) + "}" for m, p, b in requests
    )
    head = ", ".join(f"[ {quote(k)} ] = {quote(v)}" for k, v in headers.items())
    return f"""local reqs = {{
{rows}
}}
local headers = {{{head}}}
local counter = 0
setup = function(thread) counter = counter + 1; thread:set("seed", counter) end
init = function(args) math.randomseed(os.time() * 1000 + (seed or 0)) end
request = function()
  local r = reqs[math.random(#reqs)]
  return wrk.format(r[1], r[2], headers, r[3])
end
"""


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _latency(text: str, pct: str) -> float:
    match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.MULTILINE)
    return float(match[1]) * _UNITS[match[2]] if match else float("nan")


def run_wrk(url: str, requests: list[Request], headers: dict[str, str], seconds: float, connections: int) -> Figures:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_lua(requests, headers))
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", script.name, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        Path(script.name).unlink()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    total = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    bad = int(non2xx[1]) if non2xx else 0
    if errors:
        bad += sum(int(x) for x in errors.groups())
    return Figures(rps, _latency(out, "50"), _latency(out, "99"), total, bad)


def run_python(url: str, requests: list[Request], headers: dict[str, str], seconds: float, connections: int) -> Figures:
    """A closed-loop asyncio load generator; slower than wrk, so only for smoke runs."""

    async def main() -> Figures:
        latencies: list[float] = []
        bad = 0
        deadline = time.perf_counter() + seconds
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as client:

            async def worker(seed: int) -> None:
                nonlocal bad
                rng = random.Random(seed)
                while time.perf_counter() < deadline:
                    method, path, body = rng.choice(requests)
                    began = time.perf_counter()
                    response = await client.request(method, path, content=body)
                    latencies.append((time.perf_counter() - began) * 1000)
                    bad += not 200 <= response.status_code < 300

            started = time.perf_counter()
            await asyncio.gather(*(worker(i) for i in range(connections)))
            elapsed = time.perf_counter() - started
        latencies.sort()
        n = len(latencies)
        return Figures(
            n / elapsed, latencies[n // 2] if n else 0, latencies[min(n - 1, int(n * 0.99))] if n else 0, n, bad
        )

    return asyncio.run(main())
